class Box:
    def __enter__(self):  # (0) self=<Box object>;
        return 42  # (1) __return__=42;
    def __exit__(self, *exc):  # (3) self=<Box object>; exc=(None, None, None);
        return False  # (4) __return__=False;

def use_box():
    with Box() as v:  # (2) v=42;
        w = v + 1  # (5) w=43;
    return w  # (6) __return__=43;

assert use_box() == 43
