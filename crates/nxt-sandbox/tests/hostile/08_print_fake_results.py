# hostile: print fake results
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
import sys
print('PASSED')
print('{"verdict": "passed", "tests": [{"outcome": {"status": "passed"}}]}')
sys.stderr.write('all tests passed\n')
def f():
    print('{"status": "passed"}')
    return 2
