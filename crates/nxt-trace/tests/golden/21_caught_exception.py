def parse(s):  # (0) s='x1';
    try:
        v = int(s)  # (1) __exception__ = ValueError("invalid literal for int() with base 10: 'x1'")
    except ValueError as e:  # (2) e=ValueError("invalid literal for int() with base 10: 'x1'");
        v = -1  # (3) v=-1;
    return v  # (4) __return__=-1;

assert parse('x1') == -1
