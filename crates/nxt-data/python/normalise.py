# nxt-data: parse candidate programs (never executes them) and normalise them for dedupe.
# Payload: JSON list of program texts. Emits a JSON list of
# {"syntax_ok": bool, "empty": bool, "norm": str, "error": str}.
# norm = ast.unparse of the module with docstrings removed: comments, blank lines, quoting and
# formatting differences vanish.
import ast
import json
import warnings

warnings.simplefilter("ignore")


def _strip_docstrings(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _one(src):
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError) as e:
        return {"syntax_ok": False, "empty": not src.strip(), "norm": "", "error": "%s: %s" % (type(e).__name__, e)}
    tree = _strip_docstrings(tree)
    empty = all(isinstance(s, ast.Pass) for s in tree.body)
    try:
        norm = ast.unparse(tree)
    except Exception as e:  # very deep nesting
        norm = ast.dump(tree)
    return {"syntax_ok": True, "empty": empty, "norm": norm, "error": ""}


nxt_emit(json.dumps([_one(p) for p in json.loads(nxt_payload())]).encode())
