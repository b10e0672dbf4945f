def add(a, b):  # (0) a=2; b=3;
    return a + b  # (1) __return__=5;

assert add(2, 3) == 5
