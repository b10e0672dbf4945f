# hostile: eq returns truthy non bool
# expect: failed
# outcome: 0 failed
# test: assert f() == f()
class Q:
    def __eq__(self, o):
        return [1]
    __hash__ = object.__hash__
def f():
    return Q()
