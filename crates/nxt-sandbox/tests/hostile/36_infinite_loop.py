# hostile: infinite loop
# expect: failed
# outcome: 0 timeout
# test: assert f() == 1
# test: assert g() == 2
def f():
    while True:
        pass
def g():
    return 2
