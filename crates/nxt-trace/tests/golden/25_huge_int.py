def power(b, e):  # (0) b=7; e=20000;
    r = b ** e  # (1) r=913692973567...025612000001;
    return r % 1000  # (2) __return__=1;

assert power(7, 20000) == 1
