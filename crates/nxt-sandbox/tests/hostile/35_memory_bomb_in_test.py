# hostile: memory bomb in test
# expect: failed
# outcome: 0 memory_exceeded
# test: assert f() == 1
def f():
    xs = []
    while True:
        xs.append(bytearray(10 ** 8))
