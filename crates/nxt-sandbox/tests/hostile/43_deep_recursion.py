# hostile: deep recursion
# expect: failed
# outcome: 0 error
# test: assert f(1) == 1
def f(n):
    return f(n + 1)
