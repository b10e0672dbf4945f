# nxt-data: EvalPlus-style output comparison (mirrors evalplus.eval.unsafe_execute).
import math as _nxt_math


def _nxt_poly(xs, x):
    # evalplus.eval._special_oracle._poly (oracle of HumanEval/32)
    return sum([coeff * _nxt_math.pow(x, i) for i, coeff in enumerate(xs)])


def _nxt_shape(x):
    if isinstance(x, (list, tuple)):
        shapes = [_nxt_shape(v) for v in x]
        if any(s is None for s in shapes) or len(set(shapes)) > 1:
            return None
        return (len(x),) + (shapes[0] if shapes else ())
    if isinstance(x, (bool, int, float, complex)):
        return ()
    return None


def _nxt_flat(x):
    if isinstance(x, (list, tuple)):
        for v in x:
            yield from _nxt_flat(v)
    else:
        yield x


def _nxt_isclose(a, b, rtol, atol):
    a = complex(a) if isinstance(a, complex) else float(a)
    b = complex(b) if isinstance(b, complex) else float(b)
    fa = _nxt_math.isfinite(a.real) and _nxt_math.isfinite(a.imag) if isinstance(a, complex) else _nxt_math.isfinite(a)
    fb = _nxt_math.isfinite(b.real) and _nxt_math.isfinite(b.imag) if isinstance(b, complex) else _nxt_math.isfinite(b)
    if fa and fb:
        return abs(a - b) <= atol + rtol * abs(b)
    return a == b


def _nxt_allclose(out, exp, rtol, atol):
    # numpy.allclose(out, exp, rtol, atol) on numbers and rectangular nested lists/tuples of
    # numbers; whatever numpy would reject (strings, None, dicts, ragged lists) is not close.
    so, se = _nxt_shape(out), _nxt_shape(exp)
    if so is None or se is None:
        return False
    if so != se:
        if so == ():
            out = [out] * len(list(_nxt_flat(exp)))
        elif se == ():
            exp = [exp] * len(list(_nxt_flat(out)))
        else:
            return False
    return all(_nxt_isclose(a, b, rtol, atol) for a, b in zip(_nxt_flat(out), _nxt_flat(exp)))


def _nxt_ep_eq(out, exp, atol):
    """True when `out` matches `exp` as EvalPlus judges it (`atol` already includes the 1e-6
    EvalPlus enforces once a float output has been seen)."""
    exact_match = out == exp
    if not exact_match and atol != 0:
        if type(out) != type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return _nxt_allclose(out, exp, 1e-07, atol)
    return bool(exact_match)


def _nxt_ep_zero(xs, out, atol):
    """The HumanEval/32 (find_zero) oracle of EvalPlus: |poly(xs, out)| <= atol."""
    return abs(_nxt_poly(xs, out)) <= atol
