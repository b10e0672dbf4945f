# hostile: huge product
# expect: failed
# test: assert f() == 1
import itertools
def f():
    return sum(1 for _ in itertools.product(range(100), repeat=8)) and len(list(itertools.product(range(1000), repeat=5)))
