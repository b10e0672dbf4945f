# hostile: subprocess shell
# expect: failed
# outcome: load error
# absent: /tmp/nxt-hostile-canary-subprocess
# test: assert f() == 1
import subprocess
subprocess.run(['sh', '-c', 'touch /tmp/nxt-hostile-canary-subprocess'])
def f():
    return 1
