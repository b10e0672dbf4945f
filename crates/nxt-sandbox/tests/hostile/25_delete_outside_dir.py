# hostile: delete outside dir
# expect: failed
# outcome: 0 failed
# canary: /tmp/nxt-hostile-canary-delete
# test: assert f() == 1
import os, shutil
ok = False
try:
    os.remove('/tmp/nxt-hostile-canary-delete')
    ok = True
except OSError:
    pass
try:
    os.rename('/tmp/nxt-hostile-canary-delete', 'stolen')
    ok = True
except OSError:
    pass
def f():
    return 1 if ok else 2
