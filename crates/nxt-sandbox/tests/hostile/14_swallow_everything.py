# hostile: swallow everything
# expect: failed
# test: assert f() == 1
import sys, threading
sys.excepthook = lambda *a: None
threading.excepthook = lambda *a: None
def f():
    try:
        return 2
    except BaseException:
        return 1
    finally:
        pass
