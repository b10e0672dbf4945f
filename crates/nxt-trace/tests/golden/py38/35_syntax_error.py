def broken(x)  # (0) __exception__ = SyntaxError('invalid syntax')
    return x

assert broken(1) == 1
