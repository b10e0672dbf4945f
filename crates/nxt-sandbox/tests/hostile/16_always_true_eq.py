# hostile: always true eq
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
# test: assert f() == [1, 2]
class Yes:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
def f():
    return Yes()
