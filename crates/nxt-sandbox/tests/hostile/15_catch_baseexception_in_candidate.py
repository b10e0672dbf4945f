# hostile: catch baseexception in candidate
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
def f():
    while True:
        try:
            return 2
        except BaseException:
            continue
