"""Cost per traced line event: the nxt tracer vs PySnooper vs snoop, on the same programs.

Run with crates/nxt-trace/benches/bench_tracers.sh (it makes a /tmp venv with PySnooper and snoop).
All three trace the same MBPP reference programs on their first test, in this process, with
output discarded (no I/O). Cost per event = (CPU time traced - CPU time untraced) / line events,
where line events are counted once with a bare sys.settrace counter restricted to the program's
own frames. CPU time (time.process_time) is used because the machine is shared; each figure
is the median of BENCH_REPEAT (default 5) interleaved runs.
"""
import io
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
import tracer as nxt  # noqa: E402

import pysnooper  # noqa: E402
import snoop  # noqa: E402

DATA = os.environ.get("NXT_DATA_DIR", os.path.join(HERE, "..", "..", "..", "..", "shared", "data"))
LIMIT = int(os.environ.get("BENCH_PROGRAMS", "300"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))


def load():
    progs = []
    with open(os.path.join(DATA, "mbpp", "mbpp.jsonl")) as f:
        for line in f:
            r = json.loads(line)
            if r["test_setup_code"].strip():
                continue
            progs.append((r["task_id"], r["code"], r["test_list"][0]))
    return progs[:LIMIT]


# Loop-heavy programs: thousands of line events each, so per-program fixed costs (compiling,
# source analysis, JSON) do not hide the per-event cost.
SYNTHETIC = [
    ("bubble_sort", """def bubble(xs):
    xs = list(xs)
    n = len(xs)
    for i in range(n):
        for j in range(n - 1 - i):
            if xs[j] > xs[j + 1]:
                xs[j], xs[j + 1] = xs[j + 1], xs[j]
    return xs
""", "assert bubble(list(range(40, 0, -1))) == list(range(1, 41))"),
    ("count_vowels", """def count_vowels(word):
    n = 0
    for ch in word:
        if ch in 'aeiou':
            n += 1
    return n
""", "assert count_vowels('Apple pie and banana split ' * 60) >= 0"),
    ("fib_table", """def fib(k):
    table = [0, 1]
    for i in range(2, k):
        table.append(table[i - 1] + table[i - 2])
    return table[-1]
""", "assert fib(400) > 0"),
    ("grid_sum", """def grid(n):
    total = 0
    for i in range(n):
        for j in range(n):
            total += i * j
    return total
""", "assert grid(40) > 0"),
]


def compiled(progs):
    out = []
    for tid, code, test in progs:
        out.append((tid, code, test, compile(code, nxt.PROGRAM_FILE, "exec"), compile(test, nxt.TEST_FILE, "exec")))
    return out


def run_plain(item):
    _, _, _, pc, tc = item
    g = {"__name__": "__nxt_program__"}
    try:
        exec(pc, g)
        exec(tc, g)
    except Exception:
        pass


def count_events(item):
    n = [0]

    def local(frame, event, arg):
        if event == "line":
            n[0] += 1
        return local

    def glob(frame, event, arg):
        fn = frame.f_code.co_filename
        if fn in (nxt.PROGRAM_FILE, nxt.TEST_FILE) and frame.f_code.co_name not in nxt._COMP_NAMES:
            return local
        return None

    sys.settrace(glob)
    try:
        run_plain(item)
    finally:
        sys.settrace(None)
    return n[0]


def run_nxt(item):
    tid, code, test, _, _ = item
    doc = code if code.endswith("\n") else code + "\n"
    off = len(nxt._split_lines(doc)) + 1
    req = {"program": code, "test": test, "test_offset": off, "run_budget_s": 60.0,
           "time_budget_s": 60.0, "max_events": 10 ** 9}
    out = []
    nxt.run(req, out.append)
    return out[0]


class Null(object):
    def write(self, s):
        pass

    def flush(self):
        pass


def run_pysnooper(item):
    _, _, _, pc, tc = item
    g = {"__name__": "__nxt_program__"}
    with pysnooper.snoop(output=Null(), depth=50):
        try:
            exec(pc, g)
            exec(tc, g)
        except Exception:
            pass


SNOOP = snoop.Config(out=Null(), color=False, columns=())


def run_snoop(item):
    _, _, _, pc, tc = item
    g = {"__name__": "__nxt_program__"}
    with SNOOP.snoop(depth=50):
        try:
            exec(pc, g)
            exec(tc, g)
        except Exception:
            pass


def cpu(fn, items):
    real_stdout = sys.stdout
    sys.stdout = io.StringIO()
    try:
        t = time.process_time()
        for it in items:
            fn(it)
        return time.process_time() - t
    finally:
        sys.stdout = real_stdout


def main():
    which = os.environ.get("BENCH_SET", "mbpp")
    if which == "loops":
        items = compiled(SYNTHETIC)
    else:
        items = compiled(load())
    # drop programs that are slow untraced (they would dominate every figure)
    quick = []
    for it in items:
        t = time.process_time()
        run_plain(it)
        if time.process_time() - t < 0.05:
            quick.append(it)
    items = quick
    events = sum(count_events(it) for it in items)
    tracers = [("untraced", run_plain), ("nxt", run_nxt), ("pysnooper", run_pysnooper),
               ("snoop", run_snoop)]
    runs = {name: [] for name, _ in tracers}
    for _ in range(REPEAT):  # interleaved, so a change of machine load hits every tracer alike
        for name, fn in tracers:
            runs[name].append(cpu(fn, items))
    results = {name: sorted(r)[len(r) // 2] for name, r in runs.items()}
    base = results["untraced"]
    what = "loop-heavy programs" if which == "loops" else "MBPP programs (first test each)"
    print("python %s, %d %s, %d line events, median of %d runs"
          % (sys.version.split()[0], len(items), what, events, REPEAT))
    print("| tracer | CPU s (all programs) | µs per line event | vs nxt |")
    print("|---|---|---|---|")
    per = {k: (v - base) / max(events, 1) * 1e6 for k, v in results.items()}
    for name in ("untraced", "nxt", "pysnooper", "snoop"):
        ratio = "" if name == "untraced" else "%.1fx" % (per[name] / per["nxt"])
        cost = "-" if name == "untraced" else "%.2f" % per[name]
        print("| %s | %.3f | %s | %s |" % (name, results[name], cost, ratio))


if __name__ == "__main__":
    main()
