# hostile: fsize bomb
# expect: failed
# outcome: 0 error
# test: assert f() == 1
def f():
    with open('big', 'wb') as fh:
        for _ in range(10 ** 4):
            fh.write(b'x' * (1 << 20))
    return 1
