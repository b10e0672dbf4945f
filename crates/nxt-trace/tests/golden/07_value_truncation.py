def shout(text):  # (0) text='the quick brown fox jumps over the lazy dog';
    loud = text.upper() * 3  # (1) loud='THE QUICK BROWN FOX JUMPS OVER THE LA... OVER THE LAZY DOG';
    return loud  # (2) __return__='THE QUICK BROWN FOX JUMPS OVER THE LA... OVER THE LAZY DOG';

assert len(shout('the quick brown fox jumps over the lazy dog')) == 129
