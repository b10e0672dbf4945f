# nxt-sandbox strict comparison functions (trusted code, shipped inside the nxt binary).
#
# Not a module: the harness (python/harness.py) receives this source in NXT_SANDBOX_STRICT and
# executes it in globals of its own with empty builtins; `build_strict` there binds every name
# these functions use through their default arguments.
def _family(t, _issub=None, _bool=None, _int=None, _float=None, _complex=None, _str=None,
            _bytes=None, _list=None, _tuple=None, _dict=None, _set=None, _frozenset=None,
            _none=None, _deque=None):
    if t is _bool or t is _int or t is _float or _issub(t, _int) or _issub(t, _float):
        return "num"
    if t is _complex:
        return "num"
    if _issub(t, _str):
        return "str"
    if t is _bytes:
        return "bytes"
    if t is _none:
        return "none"
    if _issub(t, _list):
        return "list"
    if _issub(t, _tuple):
        return "tuple"
    if _issub(t, _dict):
        return "dict"
    if _issub(t, _set) or _issub(t, _frozenset):
        return "set"
    if t is _deque:
        return "deque"
    return "other"

def _strict_eq(a, b, _type=None, _family=None, _self=None, _trusted=None, _bool=None,
               _int=None, _float=None, _str=None, _range=None, _issub=None,
               _llen=None, _lget=None, _tlen=None, _tget=None, _dlen=None, _dkeys=None,
               _dhas=None, _dget=None, _siter=None, _fsiter=None, _frozenset=None,
               _list=None, _set=None, _intv=None, _floatv=None, _strv=None):
    """Equality on the data itself: values stored in builtin types are compared through the
    builtin types' own C methods (overridden methods are ignored); numbers compare by value
    (bool, int and float alike, as Python and EvalPlus do); other objects must have the same
    type and their __eq__ must return a real True."""
    ta = _type(a)
    tb = _type(b)
    fa = _family(ta)
    fb = _family(tb)
    if fa != fb:
        return False
    if fa == "num":
        if ta is not _bool and _issub(ta, _int):
            a = _intv(a)
        elif _issub(ta, _float):
            a = _floatv(a)
        if tb is not _bool and _issub(tb, _int):
            b = _intv(b)
        elif _issub(tb, _float):
            b = _floatv(b)
        return a == b
    if fa == "str":
        return _strv(a) == _strv(b)
    if fa == "bytes" or fa == "none":
        return a == b
    if fa == "list" or fa == "tuple":
        ln, gt = (_llen, _lget) if fa == "list" else (_tlen, _tget)
        n = ln(a)
        if n != ln(b):
            return False
        for i in _range(n):
            if not _self(gt(a, i), gt(b, i)):
                return False
        return True
    if fa == "deque":
        return _self(_list(a), _list(b))
    if fa == "dict":
        if _dlen(a) != _dlen(b):
            return False
        for k in _list(_dkeys(a)):
            if not _trusted(k) or not _dhas(b, k):
                return False
            if not _self(_dget(a, k), _dget(b, k)):
                return False
        return True
    if fa == "set":
        xa = _frozenset(_siter(a) if _issub(ta, _set) else _fsiter(a))
        xb = _frozenset(_siter(b) if _issub(tb, _set) else _fsiter(b))
        if not (_trusted(xa) and _trusted(xb)):
            return False
        return xa == xb
    if ta is not tb:
        return False
    r = a == b
    return _type(r) is _bool and r

def _trusted(v, _type=None, _scalars=None, _self=None, _list=None, _tuple=None,
             _dict=None, _set=None, _frozenset=None, _flags=None):
    t = _type(v)
    if t in _scalars:
        return True
    if t is _tuple or t is _list or t is _frozenset or t is _set:
        for x in v:  # exact builtin containers: their iteration is their own
            if not _self(x):
                return False
        return True
    if t is _dict:
        for k in v:
            if not _self(k) or not _self(v[k]):
                return False
        return True
    f = _flags(t)
    # A type implemented in C (static, or an immutable heap type): the program cannot replace
    # any of its methods, so its comparisons and truth value are its own.
    return not (f & 512) or (f & 256) != 0

def _truth(v, _trusted=None, _bool=None):
    if _trusted(v):
        return _bool(v)
    return False

def _cmp(op, a, b, _eq=None, _trusted=None, _lt=None, _le=None, _gt=None, _ge=None,
         _contains=None, _type=None, _bool=None):
    if op == "==":
        return _eq(a, b)
    if op == "!=":
        return not _eq(a, b)
    if op == "is":
        return a is b
    if op == "is not":
        return a is not b
    if not (_trusted(a) and _trusted(b)):
        return False
    if op == "<":
        r = _lt(a, b)
    elif op == "<=":
        r = _le(a, b)
    elif op == ">":
        r = _gt(a, b)
    elif op == ">=":
        r = _ge(a, b)
    elif op == "in":
        r = _contains(b, a)
    elif op == "not in":
        r = not _contains(b, a)
    else:
        return False
    return _type(r) is _bool and r
