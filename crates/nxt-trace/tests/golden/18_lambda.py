def by_last(pairs):  # (0) pairs=[(1, 'b'), (2, 'a')];
    key = lambda p: p[1]  # (1) key=<function by_last.<locals>.<lambda>>; (2) p=(1, 'b'); ...; (5) __return__='a';
    return sorted(pairs, key=key)  # (6) __return__=[(2, 'a'), (1, 'b')];

assert by_last([(1, 'b'), (2, 'a')]) == [(2, 'a'), (1, 'b')]
