# hostile: truthy object
# expect: failed
# outcome: 0 failed
# test: assert f()
# test: assert f() is not None and f()
class T:
    def __bool__(self):
        return True
def f():
    return T()
