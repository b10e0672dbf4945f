# hostile: str for int
# expect: failed
# outcome: 0 failed
# test: assert f() == 3
def f():
    return '3'
