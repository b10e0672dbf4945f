# nxt: max_events=12 run_budget_s=1
def spin(n):  # (0) n=1;
    i = 0  # (1) i=0;
    while True:
        i += 1  # (2) i=1; (3) i=2; (4) i=3; ...; (11) i=10; [trace truncated: step budget reached]
    return i

assert spin(1) == 1
