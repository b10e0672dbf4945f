# hostile: fd exhaustion
# expect: failed
# outcome: 0 error
# test: assert f() == 1
def f():
    fs = []
    while True:
        fs.append(open('/dev/null'))
