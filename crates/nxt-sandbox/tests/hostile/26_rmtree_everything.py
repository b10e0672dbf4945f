# hostile: rmtree everything
# expect: failed
# outcome: 0 failed
# canary: /tmp/nxt-hostile-canary-rmtree
# test: assert f() == 1
import shutil
shutil.rmtree('/tmp', ignore_errors=True)
shutil.rmtree('/usr/lib/python3', ignore_errors=True)
def f():
    return 2
