# hostile: traceback frame walk
# expect: failed
# outcome: 0 error
# test: assert f() == 1
def f():
    try:
        raise ValueError
    except ValueError as e:
        fr = e.__traceback__.tb_frame.f_back
    return 1
