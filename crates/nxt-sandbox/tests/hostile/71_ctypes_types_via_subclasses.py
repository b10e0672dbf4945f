# hostile: look for already loaded ctypes types (memory access) through object.__subclasses__()
# expect: failed
# outcome: 0 failed
# test: assert f() == 1
def walk(c, seen):
    for s in type.__subclasses__(c):
        if s not in seen:
            seen.add(s)
            walk(s, seen)
    return seen
found = [c for c in walk(object, set()) if c.__module__ in ("ctypes", "_ctypes")]
def f():
    if found:
        raise SystemError("ctypes types are reachable: %r" % found[:3])
    return 2
