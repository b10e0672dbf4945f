def incr_list(l):  # (1) l=[1, 2]; (3) l=[];
    return [e + 1 for e in l]  # (2) __return__=[2, 3]; (4) __return__=[];

def check(candidate):  # (0) candidate=<function incr_list>;
    assert candidate([1, 2]) == [2, 3]
    assert candidate([]) == [1]  # (5) __exception__ = AssertionError()
check(incr_list)  # (6) __exception__ = AssertionError()
