# hostile: abort
# expect: failed
# outcome: 0 crashed
# test: assert f() == 1
import os
def f():
    os.abort()
