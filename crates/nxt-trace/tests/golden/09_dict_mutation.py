def histogram(s):  # (0) s='abca';
    counts = {}  # (1) counts={};
    for c in s:  # (2) c='a'; (4) c='b'; (6) c='c'; (8) c='a';
        counts[c] = counts.get(c, 0) + 1  # (3) counts={'a': 1}; (5) counts={'a': 1, 'b': 1}; ...; (9) counts={'a': 2, 'b': 1, 'c': 1};
    return counts  # (10) __return__={'a': 2, 'b': 1, 'c': 1};

assert histogram('abca') == {'a': 2, 'b': 1, 'c': 1}
