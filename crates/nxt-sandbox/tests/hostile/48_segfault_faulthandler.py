# hostile: segfault faulthandler
# expect: failed
# note: faulthandler raises SIGSEGV with raise(); the job is PID 1 of its namespace, so a self-sent signal without handler is ignored and the test simply fails
# test: assert f() == 1
import faulthandler
def f():
    faulthandler._sigsegv()
