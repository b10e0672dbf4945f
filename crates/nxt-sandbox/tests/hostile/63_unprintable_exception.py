# hostile: unprintable exception
# expect: failed
# outcome: 0 error
# test: assert f() == 1
class E(Exception):
    def __str__(self):
        raise RuntimeError('no')
    def __repr__(self):
        raise RuntimeError('no')
def f():
    raise E()
