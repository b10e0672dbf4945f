def show(xs):  # (0) xs=[1, 2];
    for x in xs:  # (1) x=1; (2) x=2;
        print('item', x)
    return len(xs)  # (3) __return__=2;

assert show([1, 2]) == 2
