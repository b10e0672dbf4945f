# hostile: execv python
# expect: failed
# outcome: load error
# test: assert f() == 1
import os, sys
os.execv('/bin/sh', ['sh', '-c', 'exit 0'])
def f():
    return 1
