import random

from pizzja_sdk import escape, unescape

# XEP-0106 section 5, Table 3: (unescaped localpart, escaped localpart).
XEP_EXAMPLES = [
    ("space cadet", r"space\20cadet"),
    ('call me "ishmael"', r"call\20me\20\22ishmael\22"),
    ("at&t guy", r"at\26t\20guy"),
    ("d'artagnan", r"d\27artagnan"),
    ("/.fanboy", r"\2f.fanboy"),
    ("::foo::", r"\3a\3afoo\3a\3a"),
    ("<foo>", r"\3cfoo\3e"),
    ("user@host", r"user\40host"),
    ("c:\\net", r"c\3a\net"),
    ("c:\\\\net", r"c\3a\\net"),
    ("c:\\cool stuff", r"c\3a\cool\20stuff"),
    ("c:\\5commas", r"c\3a\5c5commas"),
]


def test_escapes_every_example_of_xep_0106():
    for plain, escaped in XEP_EXAMPLES:
        assert escape(plain) == escaped, plain


def test_unescapes_every_example_of_xep_0106():
    for plain, escaped in XEP_EXAMPLES:
        assert unescape(escaped) == plain, escaped


def test_unknown_sequences_and_a_trailing_backslash_are_kept():
    assert unescape("trailing\\") == "trailing\\"
    assert unescape(r"a\zzb") == r"a\zzb"
    assert unescape("\\4") == "\\4"


def test_escape_then_unescape_gives_back_any_string():
    rng = random.Random(7)
    alphabet = " \"&'/:<>@\\a5c20é"
    for n in range(2000):
        s = "".join(rng.choice(alphabet) for _ in range(n % 12))
        assert unescape(escape(s)) == s, repr(s)
