def evens(xs):  # (0) xs=[1, 2, 3, 4];
    out = []  # (1) out=[];
    for x in xs:  # (2) x=1; (3) x=2; (5) x=3; (6) x=4;
        if x % 2 == 0:
            out.append(x)  # (4) out=[2]; (7) out=[2, 4];
    return out  # (8) __return__=[2, 4];

assert evens([1, 2, 3, 4]) == [2, 4]
