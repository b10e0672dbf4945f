def total_len(words):  # (0) words=['ab', 'cde'];
    n = sum(len(w) for w in words)  # (1) n=5;
    return n  # (2) __return__=5;

assert total_len(['ab', 'cde']) == 5
