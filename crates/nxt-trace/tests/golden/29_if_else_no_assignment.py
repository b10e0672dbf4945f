def sign(x):  # (0) x=-4;
    if x > 0:
        return 1
    elif x < 0:
        return -1  # (1) __return__=-1;
    else:
        return 0

assert sign(-4) == -1
