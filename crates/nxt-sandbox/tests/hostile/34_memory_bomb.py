# hostile: memory bomb
# expect: failed
# outcome: load memory_exceeded
# test: assert f() == 1
x = 'a' * (10 ** 11)
def f():
    return 1
