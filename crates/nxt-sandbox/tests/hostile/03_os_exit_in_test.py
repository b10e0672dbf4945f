# hostile: os exit in test
# expect: failed
# outcome: 0 error
# test: assert f() == 1
# test: assert f() == 1
import os
def f():
    os._exit(0)
