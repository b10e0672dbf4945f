import math
from collections import Counter
R = 2  # (0) R=2;

def circle(r):  # (1) r=2;
    a = math.pi * r ** 2  # (2) a=12.566370614359172;
    return round(a, 2)  # (3) __return__=12.57;

assert circle(R) == 12.57
