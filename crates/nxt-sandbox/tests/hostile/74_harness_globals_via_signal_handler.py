# hostile: reach harness globals through an inherited signal handler
# expect: failed
# test: assert f() == 2
import signal
import sys


def f():
    for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        try:
            h = signal.getsignal(sig)
            g = getattr(h, "__globals__", None)
        except Exception:
            continue
        if not g:
            continue
        for v in list(g.values()):
            for c in (getattr(v, "__closure__", None) or ()):
                try:
                    x = c.cell_contents
                except ValueError:
                    continue
                if isinstance(x, list) and x == [False]:
                    x[0] = True
        for v in list(g.values()):
            if isinstance(v, list) and v == [False]:
                v[0] = True
        try:
            frame = sys._getframe(1)
        except Exception:
            continue
        while frame is not None:
            if "rec" in frame.f_locals and "nonce" in frame.f_locals:
                frame.f_locals["rec"](b"R", 0, b"passed")
                frame.f_locals["rec"](b"D", 0)
                import os
                os._exit(0)
            frame = frame.f_back
    return 1
