# hostile: int subclass eq
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
class I(int):
    def __eq__(self, other):
        return True
    __hash__ = int.__hash__
def f():
    return I(7)
