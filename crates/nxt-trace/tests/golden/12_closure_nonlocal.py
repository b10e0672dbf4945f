def make_counter():
    count = 0  # (0) count=0;
    def inc(step):  # (3) step=2; (6) step=3;
        nonlocal count
        count += step  # (4) count=2; (7) count=5;
        return count  # (5) __return__=2; (8) __return__=5;
    return inc  # (1) __return__=<function make_counter.<locals>.inc>;

def use():
    c = make_counter()  # (2) c=<function make_counter.<locals>.inc>;
    c(2)
    return c(3)  # (9) __return__=5;

assert use() == 5
