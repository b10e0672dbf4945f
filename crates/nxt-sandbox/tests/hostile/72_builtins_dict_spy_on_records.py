# hostile: replace a builtin in the shared builtins dict to read the record secret, then forge a pass
# expect: failed
# test: assert f() == 2
import os
import struct
SECRET = []
_mv = memoryview


def spy(m):
    if not SECRET:
        SECRET.append(bytes(m)[:16])
    return _mv(m)


try:
    __builtins__["memoryview"] = spy
except TypeError:
    __builtins__.memoryview = spy
for name in ("len", "bytes", "isinstance", "type", "str"):
    orig = (__builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name))


def f():
    if SECRET:
        n = SECRET[0]
        os.write(3, n + b"R" + struct.pack(">II", 0, 6) + b"passed" + n + b"D" + struct.pack(">II", 0, 0))
        os._exit(0)
    return 1
