def ident(x):
    return x

assert ident(undefined_name) == 1  # (0) __exception__ = NameError("name 'undefined_name' is not defined")
