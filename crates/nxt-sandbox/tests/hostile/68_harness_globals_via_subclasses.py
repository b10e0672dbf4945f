# hostile: reach harness globals through object.__subclasses__() and rewrite them
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
# test: assert f() == 1
import sys
touched = 0
for cls in object.__subclasses__():
    for v in list(vars(cls).values()):
        g = getattr(v, "__globals__", None)
        if isinstance(g, dict) and ("child_run" in g or "ZYGOTE" in g or "LIBC" in g):
            b = g.get("__builtins__")
            if isinstance(b, dict):
                b["range"] = lambda *a: iter([0])
                b["len"] = lambda *a: 0
            for k in list(g):
                if callable(g[k]) and not isinstance(g[k], type):
                    g[k] = lambda *a, **k: None
            touched += 1
            break
def f():
    return 2
