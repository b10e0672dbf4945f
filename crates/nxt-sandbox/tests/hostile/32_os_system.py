# hostile: os system
# expect: failed
# outcome: load error
# absent: /tmp/nxt-hostile-canary-system
# test: assert f() == 1
import os
os.system('touch /tmp/nxt-hostile-canary-system')
def f():
    return 1
