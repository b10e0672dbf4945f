# nxt-data: compute EvalPlus expected outputs by running a canonical solution on each input.
# Runs as a trusted driver inside the sandbox, after the helpers of evalplus_check.py.
# nxt_payload(): JSON {"code", "entry_point", "inputs": {"base": <json text>, "plus": <json
# text>}, "max_literal": n}. Emits once: {"base": [case...], "plus": [case...]} or {"error"},
# case = {"args": [literal...], "out": literal | null, "digest": sha256 | null, "floats": bool}.
# Outputs whose literal is longer than max_literal (and not float-valued) are given by digest.
import copy
import json

_BUILTINS = {"float": float, "complex": complex, "set": set, "frozenset": frozenset}


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
    # evalplus.eval.is_floats (its numpy branch cannot apply: no numpy values occur here)
    if isinstance(x, float):
        return True
    if isinstance(x, (list, tuple)) and x:
        return all(isinstance(i, float) for i in x)
    return False


def _checked_lit(x, what):
    s = _nxt_lit(x)
    if not _same(eval(s, {"__builtins__": _BUILTINS}), x):
        raise ValueError("%s does not round-trip through its literal %.200s" % (what, s))
    return s


def main():
    p = json.loads(nxt_payload())
    max_lit = p.get("max_literal", 65536)
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
            floats = _is_floats(out)
            lit = _nxt_lit(out)
            if len(lit) > max_lit and not floats:
                cases.append({"args": args, "out": None, "digest": _nxt_digest(out), "floats": False})
            else:
                cases.append({"args": args, "out": _checked_lit(out, "%s output %d" % (part, i)), "digest": None, "floats": floats})
        res[part] = cases
    return res


try:
    _res = main()
except BaseException as e:  # report everything, SystemExit included
    _res = {"error": "%s: %s" % (type(e).__name__, str(e)[:2000])}
nxt_emit(json.dumps(_res).encode())
