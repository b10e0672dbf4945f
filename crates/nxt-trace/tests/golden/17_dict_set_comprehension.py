def index(words):  # (0) words=['ant', 'bee', 'apes'];
    pos = {w: i for i, w in enumerate(words)}  # (1) pos={'ant': 0, 'bee': 1, 'apes': 2};
    lens = {len(w) for w in words}  # (2) lens={3, 4};
    return len(pos) + len(lens)  # (3) __return__=5;

assert index(['ant', 'bee', 'apes']) == 5
