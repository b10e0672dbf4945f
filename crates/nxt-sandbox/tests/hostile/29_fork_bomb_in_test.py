# hostile: fork bomb in test
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import os
def f():
    pids = []
    while True:
        pids.append(os.fork())
