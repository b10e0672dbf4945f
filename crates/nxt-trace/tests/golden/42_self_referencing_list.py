def loop_list():
    xs = [1]  # (0) xs=[1];
    xs.append(xs)  # (1) xs=[1, [...]];
    return xs  # (2) __return__=[1, [...]];

assert len(loop_list()) == 2
