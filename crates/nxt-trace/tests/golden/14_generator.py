def countdown(n):  # (2) n=3;
    while n > 0:  # (15) __return__=None;
        yield n  # (3) __yield__=3; (7) __yield__=2; (11) __yield__=1;
        n -= 1  # (6) n=2; (10) n=1; (14) n=0;

def collect(n):  # (0) n=3;
    out = []  # (1) out=[];
    for v in countdown(n):  # (4) v=3; (8) v=2; (12) v=1;
        out.append(v)  # (5) out=[3]; (9) out=[3, 2]; (13) out=[3, 2, 1];
    return out  # (16) __return__=[3, 2, 1];

assert collect(3) == [3, 2, 1]
