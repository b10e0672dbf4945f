def first_long(words):  # (0) words=['hi', 'hello'];
    for w in words:  # (1) w='hi'; (3) w='hello';
        if (n := len(w)) > 3:  # (2) n=2; (4) n=5;
            return w, n  # (5) __return__=('hello', 5);
    return None

assert first_long(['hi', 'hello']) == ('hello', 5)
