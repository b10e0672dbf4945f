# hostile: infinite loop at load
# expect: failed
# outcome: load timeout
# test: assert f() == 1
while True:
    pass
def f():
    return 1
