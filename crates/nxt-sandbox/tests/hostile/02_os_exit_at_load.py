# hostile: os exit at load
# expect: failed
# outcome: load error
# test: assert f() == 1
import os
os._exit(0)
def f():
    return 1
