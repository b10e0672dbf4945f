# hostile: gc find harness
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import gc
def f():
    for o in gc.get_objects():
        pass
    return 1
