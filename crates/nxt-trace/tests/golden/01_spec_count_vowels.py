def count_vowels(word):  # (0) word='Apple';
    n = 0  # (1) n=0;
    for ch in word:  # (2) ch='A'; (3) ch='p'; (4) ch='p'; ...; (6) ch='e';
        if ch in 'aeiou':
            n += 1  # (7) n=1;
    return n  # (8) __return__=1;

assert count_vowels('Apple') == 2  # (9) __exception__ = AssertionError()
