# hostile: stdout flood correct
# expect: passed
# truncated: yes
# test: assert f() == 1
import sys
def f():
    for _ in range(2000):
        sys.stdout.write('x' * 10000)
    return 1
