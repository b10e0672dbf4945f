def sum_to(n):  # (0) n=20;
    s = 0  # (1) s=0;
    for i in range(n):  # (2) i=0; (4) i=1; (6) i=2; ...; (40) i=19;
        s += i  # (3) s=0; (5) s=1; (7) s=3; ...; (41) s=190;
    return s  # (42) __return__=190;

assert sum_to(20) == 190
