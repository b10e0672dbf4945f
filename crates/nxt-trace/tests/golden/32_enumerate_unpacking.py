def find(xs, target):  # (0) xs=['a', 'b', 'c']; target='c';
    for i, x in enumerate(xs):  # (1) i=0; x='a'; (2) i=1; x='b'; (3) i=2; x='c';
        if x == target:
            return i  # (4) __return__=2;
    return -1

assert find(['a', 'b', 'c'], 'c') == 2
