# hostile: thread keeps running
# expect: passed
# test: assert f() == 1
import threading, time
def spin():
    while True:
        time.sleep(0.001)
threading.Thread(target=spin, daemon=False).start()
def f():
    return 1
