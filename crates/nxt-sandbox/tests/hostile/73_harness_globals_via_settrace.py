# hostile: reach harness globals through the replaced sys.settrace and switch the audit hook off
# expect: failed
# test: assert f() == 2
import sys


def f():
    try:
        g = sys.settrace.__globals__
        for v in list(g.values()):
            for c in (getattr(v, "__closure__", None) or ()):
                try:
                    x = c.cell_contents
                except ValueError:
                    continue
                if isinstance(x, list) and x == [False]:
                    x[0] = True  # the hook's "trusted" switch
        frame = sys._getframe(1)
        while frame is not None:
            if "rec" in frame.f_locals and "nonce" in frame.f_locals:
                frame.f_locals["rec"](b"R", 0, b"passed")
                frame.f_locals["rec"](b"D", 0)
                import os
                os._exit(0)
            frame = frame.f_back
    except Exception:
        pass
    return 1
