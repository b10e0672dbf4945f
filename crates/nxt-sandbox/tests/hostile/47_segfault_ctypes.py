# hostile: segfault ctypes
# expect: failed
# outcome: load error
# test: assert f() == 1
import ctypes
ctypes.string_at(0)
def f():
    return 1
