# hostile: frame introspection
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import sys
def f():
    g = sys._getframe(1).f_globals
    g['rec'] = None
    return 1
