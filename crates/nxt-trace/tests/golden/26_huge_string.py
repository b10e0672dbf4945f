def repeat(s, n):  # (0) s='xy'; n=100000;
    out = s * n  # (1) out='xyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyxyx...xyxyxyxyxyxyxyxyxy';
    return len(out)  # (2) __return__=200000;

assert repeat('xy', 100000) == 200000
