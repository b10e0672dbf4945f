# hostile: write result fds
# expect: failed
# test: assert f() == 1
import os
for fd in range(3, 64):
    try:
        os.write(fd, b'\x00' * 16 + b'R' + b'\x00\x00\x00\x00\x00\x00\x00\x06passed' + b'D' * 32)
    except OSError:
        pass
def f():
    return 2
