# hostile: network unix connect
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import socket
def f():
    s = socket.socket(socket.AF_UNIX)
    s.connect('/run/systemd/private')
    return 1
