def swap(a, b):  # (0) a=1; b=2;
    a, b = b, a  # (1) a=2; b=1;
    c = a - b  # (2) c=1;
    return (a, b, c)  # (3) __return__=(2, 1, 1);

assert swap(1, 2) == (2, 1, 1)
