# hostile: ne always false
# expect: failed
# outcome: 0 failed
# test: assert not (f() != 3)
class N:
    def __ne__(self, o):
        return False
    def __eq__(self, o):
        return True
    __hash__ = object.__hash__
def f():
    return N()
