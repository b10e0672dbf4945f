# hostile: list with fake element
# expect: failed
# outcome: 0 failed
# test: assert f() == [1, 2, 3]
# test: assert f() == {1: 2}
class Y:
    def __eq__(self, o):
        return True
    __hash__ = object.__hash__
def f():
    return [1, Y(), 3]
