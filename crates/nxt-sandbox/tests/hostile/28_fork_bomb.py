# hostile: fork bomb
# expect: failed
# outcome: load error
# test: assert f() == 1
import os
while True:
    os.fork()
def f():
    return 1
