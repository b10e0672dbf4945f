def double(x):  # (0) x=4;
    y = x * 2  # (1) y=8;
    return y  # (2) __return__=8;

assert double(4) == 8
