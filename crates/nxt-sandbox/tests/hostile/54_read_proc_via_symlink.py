# hostile: read proc via symlink
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import os
def f():
    os.symlink('/proc/self/mem', 'm')
    with open('m', 'rb') as fh:
        fh.read(1)
    return 1
