# hostile: network inet
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import socket
def f():
    s = socket.create_connection(('1.1.1.1', 80), timeout=1)
    return 1
