def greet(name):  # (0) name='wörld';
    msg = 'héllo, ' + name + ' ✓'  # (1) msg='héllo, wörld ✓';
    return msg  # (2) __return__='héllo, wörld ✓';

assert greet('wörld') == 'héllo, wörld ✓'
