# hostile: generator frame walk
# expect: failed
# outcome: 0 error
# test: assert f() == 1
def gen():
    yield 1
def f():
    g = gen()
    next(g)
    fr = g.gi_frame
    return 1
