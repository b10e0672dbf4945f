def banner(name):  # (0) name='Bo';
    text = """Hello
dear """ + name  # (1) text='Hello\ndear Bo';
    return text  # (2) __return__='Hello\ndear Bo';

assert banner('Bo') == 'Hello\ndear Bo'
