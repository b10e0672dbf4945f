# hostile: raise systemexit subclass
# expect: failed
# outcome: 0 error
# test: assert f() == 1
class Quiet(SystemExit):
    pass
def f():
    raise Quiet(0)
