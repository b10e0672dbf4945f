def twice(f):  # (0) f=<function inc>;
    def wrapper(x):  # (2) x=1;
        return f(f(x))  # (7) __return__=3;
    return wrapper  # (1) __return__=<function twice.<locals>.wrapper>;

@twice
def inc(x):  # (3) x=1; (5) x=2;
    return x + 1  # (4) __return__=2; (6) __return__=3;

assert inc(1) == 3
