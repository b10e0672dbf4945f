# hostile: segfault faulthandler
# expect: failed
# outcome: 0 crashed
# test: assert f() == 1
import faulthandler
def f():
    faulthandler._sigsegv()
