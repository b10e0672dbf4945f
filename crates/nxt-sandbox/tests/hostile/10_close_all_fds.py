# hostile: close all fds
# expect: failed
# test: assert f() == 1
import os
os.closerange(0, 1024)
def f():
    return 2
