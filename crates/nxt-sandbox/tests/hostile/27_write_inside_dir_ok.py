# hostile: write inside dir ok
# expect: passed
# test: assert f() == 'data'
with open('scratch.txt', 'w') as fh:
    fh.write('data')
def f():
    with open('scratch.txt') as fh:
        return fh.read()
