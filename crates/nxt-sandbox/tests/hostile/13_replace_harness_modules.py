# hostile: replace harness modules
# expect: failed
# test: assert f() == 1
import os, sys, struct, json, time
os.write = lambda fd, b: len(b)
struct.pack = lambda *a: b''
json.dumps = lambda *a, **k: '{"status": "passed"}'
sys.modules['struct'] = None
sys.modules['os'] = None
os._exit = lambda c: None
def f():
    return 2
