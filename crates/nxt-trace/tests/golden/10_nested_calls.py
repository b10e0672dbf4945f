def square(x):  # (3) x=1; (7) x=2; (11) x=3;
    return x * x  # (4) __return__=1; (8) __return__=4; (12) __return__=9;

def sum_squares(xs):  # (0) xs=[1, 2, 3];
    total = 0  # (1) total=0;
    for x in xs:  # (2) x=1; (6) x=2; (10) x=3;
        total += square(x)  # (5) total=1; (9) total=5; (13) total=14;
    return total  # (14) __return__=14;

assert sum_squares([1, 2, 3]) == 14
