def grow(n):  # (0) n=8;
    s = ''  # (1) s='';
    for i in range(n):  # (2) i=0; (4) i=1; (6) i=2; ...; (16) i=7;
        s = s + 'abcdefghij'  # (3) s='abcdefghij'; ...; (17) s='abcdefghijabcdefghijabcdefghijabcdefg...cdefghijabcdefghij';
    return len(s)  # (18) __return__=80;

assert grow(8) == 80
