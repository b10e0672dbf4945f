def pairs(n):  # (0) n=3;
    out = []  # (1) out=[];
    for i in range(n):  # (2) i=0; (3) i=1; (6) i=2;
        for j in range(i):  # (4) j=0; (7) j=0; (9) j=1;
            out.append((j, i))  # (5) out=[(0, 1)]; (8) out=[(0, 1), (0, 2)]; (10) out=[(0, 1), (0, 2), (1, 2)];
    return out  # (11) __return__=[(0, 1), (0, 2), (1, 2)];

assert pairs(3) == [(0, 1), (0, 2), (1, 2)]
