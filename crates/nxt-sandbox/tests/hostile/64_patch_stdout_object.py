# hostile: patch stdout object
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
import sys, io
sys.stdout = io.StringIO()
sys.__stdout__ = None
sys.stdout.flush = None
def f():
    print('PASSED')
    return 2
