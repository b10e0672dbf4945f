# hostile: infinite loop in c
# expect: failed
# outcome: 0 timeout
# test: assert f() == 1
import itertools, collections
def f():
    collections.deque(itertools.count(), maxlen=0)
