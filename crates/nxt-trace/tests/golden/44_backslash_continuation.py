def total(a, b):  # (0) a=1; b=2;
    s = a + \
        b  # (1) s=3;
    t = 'x' + "y" \
        'z'  # (2) t='xyz';
    return s, t  # (3) __return__=(3, 'xyz');

assert total(1, 2) == (3, 'xyz')
