# hostile: override helper names
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
import builtins
__nxt_cmp = lambda *a: True
builtins.__nxt_cmp = lambda *a: True
_nxt_t1 = True
def f():
    globals()['__nxt_truth'] = lambda *a: True
    return 2
