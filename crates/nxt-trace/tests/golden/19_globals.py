LIMIT = 3  # (0) LIMIT=3;
calls = 0  # (1) calls=0;

def bump(x):  # (2) x=5;
    global calls
    calls += 1  # (3) calls=1;
    return min(x, LIMIT)  # (4) __return__=3;

assert bump(5) == 3  # (5) calls=1;
