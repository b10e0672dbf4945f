# hostile: read proc mem
# expect: failed
# outcome: 0 error
# test: assert f() == 1
def f():
    with open('/proc/self/mem', 'rb') as fh:
        return 1
