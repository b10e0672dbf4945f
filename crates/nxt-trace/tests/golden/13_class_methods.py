class Stack:
    def __init__(self):  # (1) self=<repr failed: AttributeError>;
        self.items = []  # (2) self=Stack([]); (3) __return__=None;

    def push(self, x):  # (6) self=Stack([]); x=3; (11) self=Stack([3]); x=4;
        self.items.append(x)  # (7) self=Stack([3]); (12) self=Stack([3, 4]);
        return len(self.items)  # (8) __return__=1; (13) __return__=2;

    def __repr__(self):
        return 'Stack(%r)' % (self.items,)

def build(xs):  # (0) xs=[3, 4];
    s = Stack()  # (4) s=Stack([]);
    for x in xs:  # (5) x=3; (10) x=4;
        n = s.push(x)  # (9) n=1; s=Stack([3]); (14) n=2; s=Stack([3, 4]);
    return s.items  # (15) __return__=[3, 4];

assert build([3, 4]) == [3, 4]
