# hostile: stdout flood forever
# expect: failed
# outcome: 0 timeout
# test: assert f() == 1
import os
def f():
    while True:
        os.write(1, b'y' * 65536)
        os.write(2, b'z' * 65536)
