def area(w,  # (0) w=2; h=3;
         h):
    result = (w *  # (1) result=6;
              h)
    return result  # (2) __return__=6;

assert area(2,
            3) == 6
