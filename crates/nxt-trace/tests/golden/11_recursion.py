def fact(n):  # (0) n=5; (1) n=4; (2) n=3; ...; (4) n=1;
    if n <= 1:
        return 1  # (5) __return__=1;
    return n * fact(n - 1)  # (6) __return__=2; (7) __return__=6; (8) __return__=24; (9) __return__=120;

assert fact(5) == 120
