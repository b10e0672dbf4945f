def inverse(x):  # (3) x=1; (7) x=0;
    return 1 / x  # (4) __return__=1.0; (8) __exception__ = ZeroDivisionError('division by zero')

def run(xs):  # (0) xs=[1, 0];
    out = []  # (1) out=[];
    for x in xs:  # (2) x=1; (6) x=0;
        out.append(inverse(x))  # (5) out=[1.0];
    return out

assert run([1, 0]) == [1.0]  # (9) __exception__ = ZeroDivisionError('division by zero')
