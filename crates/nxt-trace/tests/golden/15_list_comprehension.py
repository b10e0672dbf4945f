def squares(xs):  # (0) xs=[-1, 2, 3];
    ys = [x * x for x in xs if x > 0]  # (1) ys=[4, 9];
    return ys  # (2) __return__=[4, 9];

assert squares([-1, 2, 3]) == [4, 9]
