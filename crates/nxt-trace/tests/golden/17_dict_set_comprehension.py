def index(words):  # (0) words=['ant', 'bee', 'ape'];
    pos = {w: i for i, w in enumerate(words)}  # (1) pos={'ant': 0, 'bee': 1, 'ape': 2};
    firsts = {w[0] for w in words}  # (2) firsts={'a', 'b'};
    return len(pos) + len(firsts)  # (3) __return__=5;

assert index(['ant', 'bee', 'ape']) == 5
