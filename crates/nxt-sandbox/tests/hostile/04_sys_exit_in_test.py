# hostile: sys exit in test
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import sys
def f():
    sys.exit(0)
