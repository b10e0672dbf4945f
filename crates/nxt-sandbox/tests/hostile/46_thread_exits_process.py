# hostile: thread exits process
# expect: failed
# outcome: 0 error
# test: assert f() == 1
import threading, os, time
def later():
    time.sleep(0.05)
    os._exit(0)
threading.Thread(target=later).start()
def f():
    time.sleep(1)
    return 1
