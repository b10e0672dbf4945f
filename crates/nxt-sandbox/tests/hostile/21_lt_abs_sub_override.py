# hostile: lt abs sub override
# expect: failed
# outcome: 0 failed
# test: assert abs(f() - 2.5) < 1e-9
# test: assert f() in [1, 2, 3]
class L:
    def __sub__(self, o):
        return self
    def __abs__(self):
        return self
    def __lt__(self, o):
        return True
    def __eq__(self, o):
        return True
    __hash__ = object.__hash__
def f():
    return L()
