# hostile: busy thread correct
# expect: passed
# test: assert f() == 1
import threading
def burn():
    while True:
        pass
threading.Thread(target=burn, daemon=True).start()
def f():
    return 1
