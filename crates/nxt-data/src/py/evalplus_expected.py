# nxt-data: compute EvalPlus expected outputs by running a canonical solution on each input.
# Runs as a trusted driver inside the sandbox: nxt_payload() gives the JSON payload
# {"code", "entry_point", "inputs": {"base": <json text>, "plus": <json text>}} and the answer
# is emitted once with nxt_emit(): {"base": [case...], "plus": [case...]} or {"error": msg},
# where case = {"args": [python literal...], "out": python literal, "floats": is_floats(out)}.
import copy
import json
import math
import sys

try:
    sys.set_int_max_str_digits(0)
except AttributeError:
    pass


def _lit(x):
    t = type(x)
    if x is None or t is bool or t is str or t is bytes:
        return repr(x)
    if t is int:
        if abs(x) >= 10 ** 4000:  # hex literals are exempt from the int/str digit limit
            return hex(x)
        return repr(x)
    if t is float:
        if x != x:
            return "float('nan')"
        if math.isinf(x):
            return "float('inf')" if x > 0 else "float('-inf')"
        return repr(x)
    if t is complex:
        return "complex(%s, %s)" % (_lit(x.real), _lit(x.imag))
    if t is list:
        return "[" + ", ".join(_lit(v) for v in x) + "]"
    if t is tuple:
        if len(x) == 1:
            return "(" + _lit(x[0]) + ",)"
        return "(" + ", ".join(_lit(v) for v in x) + ")"
    if t is dict:
        return "{" + ", ".join(_lit(k) + ": " + _lit(v) for k, v in x.items()) + "}"
    if t is set:
        if not x:
            return "set()"
        return "{" + ", ".join(sorted(_lit(v) for v in x)) + "}"
    if t is frozenset:
        return "frozenset([" + ", ".join(sorted(_lit(v) for v in x)) + "])"
    raise TypeError("no literal for a value of type " + t.__name__)


def _same(a, b):
    if type(a) is not type(b):
        return False
    if type(a) is float and a != a:
        return b != b
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _is_floats(x):
    # evalplus.eval.is_floats (numpy branch dropped: no numpy values occur here)
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _checked_lit(x, what):
    s = _lit(x)
    if not _same(eval(s, {"__builtins__": {"float": float, "complex": complex, "set": set, "frozenset": frozenset}}), x):
        raise ValueError("%s does not round-trip through its literal %.200s" % (what, s))
    return s


def main():
    p = json.loads(nxt_payload())
    g = {}
    exec(compile(p["code"], "<canonical>", "exec"), g)
    fn = g[p["entry_point"]]
    res = {}
    for part in ("base", "plus"):
        inputs = json.loads(p["inputs"][part])
        cases = []
        for i, inp in enumerate(inputs):
            if not isinstance(inp, list):
                raise ValueError("%s input %d is not a list of arguments" % (part, i))
            args = [_checked_lit(a, "%s input %d" % (part, i)) for a in inp]
            out = fn(*copy.deepcopy(inp))
            cases.append({"args": args, "out": _checked_lit(out, "%s output %d" % (part, i)), "floats": _is_floats(out)})
        res[part] = cases
    return res


try:
    _res = main()
except BaseException as e:  # noqa: B036 - report everything, including SystemExit
    _res = {"error": "%s: %s" % (type(e).__name__, str(e)[:2000])}
nxt_emit(json.dumps(_res).encode())
