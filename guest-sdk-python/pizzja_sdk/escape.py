"""XEP-0106: JID Escaping, applied to a whole bare JID.

The gateway names a foreign JID J as esc(J)@T: the whole bare JID, '@'
included, becomes one localpart. Both functions accept any string and never
raise.
"""

# The ten characters XEP-0106 section 3.2 escapes, with their codes.
_CODES = {
    " ": "20", '"': "22", "&": "26", "'": "27", "/": "2f",
    ":": "3a", "<": "3c", ">": "3e", "@": "40", "\\": "5c",
}
_CHARS = {code: c for c, code in _CODES.items()}


def _code_at(s: str, i: int) -> bool:
    return s[i:i + 2] in _CHARS


def escape(text: str) -> str:
    """Escapes a string into a JID localpart (XEP-0106 section 4.2).

    A backslash is escaped only where it would otherwise start an escape
    sequence: ``c:\\net`` becomes ``c\\3a\\net``.
    """
    out = []
    for i, c in enumerate(text):
        code = _CODES.get(c)
        if code is None or (c == "\\" and not _code_at(text, i + 1)):
            out.append(c)
        else:
            out.append("\\" + code)
    return "".join(out)


def unescape(text: str) -> str:
    """Unescapes a JID localpart (XEP-0106 section 4.3).

    Only the ten defined sequences are decoded; any other backslash,
    including a trailing one, is kept as it is.
    """
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and _code_at(text, i + 1):
            out.append(_CHARS[text[i + 1:i + 3]])
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
