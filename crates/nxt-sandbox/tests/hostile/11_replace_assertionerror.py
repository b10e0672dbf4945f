# hostile: replace assertionerror
# expect: failed
# test: assert f() == 1
import builtins
class Fake(Exception):
    pass
builtins.AssertionError = Fake
AssertionError = Fake
def f():
    return 2
