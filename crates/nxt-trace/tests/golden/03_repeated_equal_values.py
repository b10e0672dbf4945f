def total(xs):  # (0) xs=[1, 1, 1];
    t = 0  # (1) t=0;
    for x in xs:  # (2) x=1; (4) x=1; (6) x=1;
        t += 0  # (3) t=0; (5) t=0; (7) t=0;
    return t  # (8) __return__=0;

assert total([1, 1, 1]) == 0
