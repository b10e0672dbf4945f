# hostile: signal handlers
# expect: failed
# outcome: 0 timeout
# test: assert f() == 1
import signal
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM, signal.SIGXCPU):
    signal.signal(s, signal.SIG_IGN)
def f():
    while True:
        pass
