# hostile: deep recursion raised limit
# expect: failed
# test: assert f(1) == 1
import sys
sys.setrecursionlimit(10 ** 8)
def f(n):
    return f(n + 1) + 1
