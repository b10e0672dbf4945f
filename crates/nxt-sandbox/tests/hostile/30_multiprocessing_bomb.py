# hostile: multiprocessing bomb
# expect: failed
# outcome: load error
# test: assert f() == 1
import multiprocessing
def f():
    return 1
