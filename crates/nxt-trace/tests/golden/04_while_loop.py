def halve(n):  # (0) n=20;
    steps = 0  # (1) steps=0;
    while n > 1:
        n //= 2  # (2) n=10; (4) n=5; (6) n=2; (8) n=1;
        steps += 1  # (3) steps=1; (5) steps=2; (7) steps=3; (9) steps=4;
    return steps  # (10) __return__=4;

assert halve(20) == 4
