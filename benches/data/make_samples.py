#!/usr/bin/env python3
"""Write the cross-check samples for HumanEval+ (EvalPlus `solution` layout), deterministically:

* the 164 HumanEval+ canonical solutions (prompt + canonical_solution),
* the 164 HumanEvalFix buggy programs (declaration + buggy_solution),
* mutants of the canonical solutions: for each task, the first MUTANTS_PER_TASK distinct
  mutations in source order among: arithmetic operator swaps (+ -, * //, ...), comparison swaps
  (< <=, == !=, ...), boolean operator swaps (and or), integer constants +1 / -1 (off-by-one),
  `return X` -> `return not X` for boolean-looking returns... (see MUTATORS).

Usage: make_samples.py HUMANEVALPLUS.jsonl[.gz] HUMANEVALPACK_PYTHON.jsonl OUT.jsonl [PER_TASK]
"""
import ast
import copy
import gzip
import json
import sys

BIN_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.FloorDiv, ast.FloorDiv: ast.Mult,
            ast.Div: ast.Mult, ast.Mod: ast.FloorDiv, ast.Pow: ast.Mult}
CMP_SWAP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
            ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
BOOL_SWAP = {ast.And: ast.Or, ast.Or: ast.And}


def sites(tree):
    """Every mutation site in a deterministic (walk) order: (node index, kind)."""
    out = []
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.BinOp) and type(node.op) in BIN_SWAP:
            out.append((i, "binop"))
        elif isinstance(node, ast.Compare) and type(node.ops[0]) in CMP_SWAP:
            out.append((i, "cmp"))
        elif isinstance(node, ast.BoolOp) and type(node.op) in BOOL_SWAP:
            out.append((i, "bool"))
        elif isinstance(node, ast.Constant) and type(node.value) is int and not isinstance(node.value, bool):
            out.append((i, "int+1"))
            out.append((i, "int-1"))
    return out


def mutate(tree, index, kind):
    t = copy.deepcopy(tree)
    node = list(ast.walk(t))[index]
    if kind == "binop":
        node.op = BIN_SWAP[type(node.op)]()
    elif kind == "cmp":
        node.ops[0] = CMP_SWAP[type(node.ops[0])]()
    elif kind == "bool":
        node.op = BOOL_SWAP[type(node.op)]()
    elif kind == "int+1":
        node.value += 1
    elif kind == "int-1":
        node.value -= 1
    return ast.unparse(t)


def read_jsonl(path):
    f = gzip.open(path, "rt") if path.endswith(".gz") else open(path)
    return [json.loads(l) for l in f if l.strip()]


def main():
    plus_path, fix_path, out_path = sys.argv[1:4]
    per_task = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    plus = read_jsonl(plus_path)
    fix = {r["task_id"].split("/")[1]: r for r in read_jsonl(fix_path)}
    rows = []
    for r in plus:
        n = r["task_id"].split("/")[1]
        canonical = r["prompt"] + r["canonical_solution"]
        rows.append({"task_id": r["task_id"], "solution": canonical, "kind": "canonical"})
        f = fix[n]
        rows.append({"task_id": r["task_id"], "solution": f["declaration"] + f["buggy_solution"], "kind": "hefix-buggy"})
        # Mutate only the body of the entry point (helpers in the prompt stay intact).
        tree = ast.parse(canonical)
        fn = [x for x in tree.body if isinstance(x, ast.FunctionDef) and x.name == r["entry_point"]]
        if not fn:
            continue
        body_tree = ast.Module(body=[fn[-1]], type_ignores=[])
        seen = {ast.unparse(body_tree)}
        made = 0
        for index, kind in sites(body_tree):
            if made >= per_task:
                break
            src = mutate(body_tree, index, kind)
            if src in seen:
                continue
            seen.add(src)
            others = [ast.unparse(x) for x in tree.body if x is not fn[-1]]
            rows.append({"task_id": r["task_id"], "solution": "\n".join(others + [src]) + "\n", "kind": "mutant:" + kind})
            made += 1
    with open(out_path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print("wrote %d samples (%s)" % (len(rows), ", ".join("%s=%d" % (k, sum(1 for r in rows if r["kind"].split(":")[0] == k)) for k in ("canonical", "hefix-buggy", "mutant"))))


if __name__ == "__main__":
    main()
