# hostile: kill parent
# expect: failed
# outcome: load crashed
# test: assert f() == 1
import os, signal
for p in (os.getppid(), 1, 0):
    try:
        os.kill(p, signal.SIGKILL)
    except Exception:
        pass
def f():
    return 2
