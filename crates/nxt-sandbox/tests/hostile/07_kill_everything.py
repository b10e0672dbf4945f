# hostile: kill everything
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
import os, signal
try:
    os.kill(-1, signal.SIGKILL)
except Exception:
    pass
def f():
    return 2
