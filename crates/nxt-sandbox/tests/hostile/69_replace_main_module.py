# hostile: import __main__ (the harness, if reachable) and wipe it
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
import __main__
__main__.__dict__.clear()
def f():
    return 2
