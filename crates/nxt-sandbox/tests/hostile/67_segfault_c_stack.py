# hostile: segfault through C stack overflow (a real SIGSEGV, not a self-sent signal)
# expect: failed
# note: a real SIGSEGV (crashed) on CPython <= 3.12; 3.13+ raises RecursionError (error)
# test: assert f() == 1
import sys
sys.setrecursionlimit(10 ** 8)
def f():
    x = []
    for _ in range(3 * 10 ** 5):
        x = [x]
    return len(repr(x))
