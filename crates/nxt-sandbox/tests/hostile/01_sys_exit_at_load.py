# hostile: sys exit at load
# expect: failed
# outcome: load error
# test: assert f() == 1
import sys
sys.exit(0)
def f():
    return 1
