# hostile: settrace hijack
# expect: failed
# outcome: load error
# test: assert f() == 1
import sys
def tracer(frame, event, arg):
    return tracer
sys.settrace(tracer)
def f():
    return 2
