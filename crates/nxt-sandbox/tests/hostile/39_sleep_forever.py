# hostile: sleep forever
# expect: failed
# outcome: 0 timeout
# test: assert f() == 1
import time
def f():
    time.sleep(10 ** 6)
