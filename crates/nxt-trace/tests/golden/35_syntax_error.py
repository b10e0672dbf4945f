def broken(x)  # (0) __exception__ = SyntaxError("expected ':'")
    return x

assert broken(1) == 1
