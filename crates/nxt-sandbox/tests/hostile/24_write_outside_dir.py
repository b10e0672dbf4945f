# hostile: write outside dir
# expect: failed
# outcome: 0 failed
# absent: /tmp/nxt-hostile-canary-written
# test: assert f() == 1
ok = False
for p in ('/tmp/nxt-hostile-canary-written', '/root/nxt-hostile', '/etc/nxt-hostile', '/var/tmp/nxt-hostile'):
    try:
        with open(p, 'w') as fh:
            fh.write('owned')
        ok = True
    except OSError:
        pass
def f():
    return 1 if ok else 2
