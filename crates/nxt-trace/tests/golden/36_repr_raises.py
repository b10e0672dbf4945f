class Weird:
    def __repr__(self):
        raise RuntimeError('no repr')

def make():
    w = Weird()  # (0) w=<repr failed: RuntimeError>;
    return 7  # (1) __return__=7;

assert make() == 7
