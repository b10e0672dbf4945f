# hostile: replace builtins
# expect: failed
# test: assert f() == 1
# test: assert isinstance(f(), int) and f() == 1
import builtins
builtins.isinstance = lambda *a: True
builtins.type = lambda *a: int
builtins.len = lambda *a: 0
builtins.range = lambda *a: iter(())
builtins.bool = lambda *a: True
builtins.str = lambda *a: 'passed'
def f():
    return 2
