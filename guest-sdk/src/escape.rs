//! XEP-0106: JID Escaping, applied to a whole bare JID.
//!
//! The gateway names a foreign JID `J` as `esc(J)@T`: the whole bare JID,
//! `@` included, becomes one localpart. [`escape`] and [`unescape`] are total
//! functions: they never panic, whatever bytes they are given (unlike the
//! `jid` crate's unescape, which panics on a trailing backslash).

/// The ten characters XEP-0106 section 3.2 escapes, with their escape codes.
const TABLE: [(char, &str); 10] = [
    (' ', "20"),
    ('"', "22"),
    ('&', "26"),
    ('\'', "27"),
    ('/', "2f"),
    (':', "3a"),
    ('<', "3c"),
    ('>', "3e"),
    ('@', "40"),
    ('\\', "5c"),
];

fn code_of(c: char) -> Option<&'static str> {
    TABLE.iter().find(|(ch, _)| *ch == c).map(|(_, code)| *code)
}

fn char_of(code: &str) -> Option<char> {
    TABLE.iter().find(|(_, c)| *c == code).map(|(ch, _)| *ch)
}

/// True when `s` starts with one of the ten escape codes (lowercase hex, as
/// XEP-0106 section 3.2 writes them).
fn starts_with_code(s: &str) -> bool {
    s.get(..2).is_some_and(|c| char_of(c).is_some())
}

/// Escapes a string into a JID localpart (XEP-0106 section 4.2).
///
/// A backslash is escaped only where it would otherwise be read as the start
/// of an escape sequence, so `c:\net` becomes `c\3a\net` but `c:\5commas`
/// becomes `c\3a\5c5commas`.
///
/// ```
/// assert_eq!(pizzja_sdk::escape("contact@remote.net"), r"contact\40remote.net");
/// ```
pub fn escape(input: &str) -> String {
    let mut out = String::with_capacity(input.len() + 8);
    // The ten characters are ASCII space and punctuation: scan bytes, pass
    // over letters and digits at once, copy the runs between escapes.
    let mut copied = 0;
    for (i, b) in input.bytes().enumerate() {
        if !(b == b' ' || b.is_ascii_punctuation()) {
            continue;
        }
        let Some(code) = code_of(char::from(b)) else {
            continue;
        };
        if b == b'\\' && !starts_with_code(&input[i + 1..]) {
            continue;
        }
        out.push_str(&input[copied..i]);
        out.push('\\');
        out.push_str(code);
        copied = i + 1;
    }
    out.push_str(&input[copied..]);
    out
}

/// Unescapes a JID localpart (XEP-0106 section 4.3).
///
/// Only the ten defined sequences are decoded; any other backslash,
/// including one at the very end, is kept as it is.
///
/// ```
/// assert_eq!(pizzja_sdk::unescape(r"contact\40remote.net"), "contact@remote.net");
/// assert_eq!(pizzja_sdk::unescape(r"trailing\"), r"trailing\");
/// ```
pub fn unescape(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        match after.get(..2).and_then(char_of) {
            Some(c) => {
                out.push(c);
                rest = &after[2..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0106 section 5, Table 3: (unescaped localpart, escaped localpart).
    const XEP_EXAMPLES: &[(&str, &str)] = &[
        ("space cadet", r"space\20cadet"),
        (r#"call me "ishmael""#, r"call\20me\20\22ishmael\22"),
        ("at&t guy", r"at\26t\20guy"),
        ("d'artagnan", r"d\27artagnan"),
        ("/.fanboy", r"\2f.fanboy"),
        ("::foo::", r"\3a\3afoo\3a\3a"),
        ("<foo>", r"\3cfoo\3e"),
        ("user@host", r"user\40host"),
        (r"c:\net", r"c\3a\net"),
        (r"c:\\net", r"c\3a\\net"),
        (r"c:\cool stuff", r"c\3a\cool\20stuff"),
        (r"c:\5commas", r"c\3a\5c5commas"),
    ];

    #[test]
    fn escapes_every_example_of_xep_0106() {
        for (plain, escaped) in XEP_EXAMPLES {
            assert_eq!(escape(plain), *escaped, "escaping {plain:?}");
        }
    }

    #[test]
    fn unescapes_every_example_of_xep_0106() {
        for (plain, escaped) in XEP_EXAMPLES {
            assert_eq!(unescape(escaped), *plain, "unescaping {escaped:?}");
        }
    }

    #[test]
    fn leaves_sequences_that_are_not_escapes_alone() {
        // XEP-0106 section 4.3: only the ten codes are decoded.
        assert_eq!(unescape(r"\2plus\2is\4"), r"\2plus\2is\4");
        assert_eq!(unescape(r"foo\bar"), r"foo\bar");
        assert_eq!(unescape(r"foob\41r"), r"foob\41r");
        // Uppercase hex is not an escape either.
        assert_eq!(unescape(r"a\3A"), r"a\3A");
    }

    #[test]
    fn survives_hostile_input() {
        for input in [
            "\\",
            "\\\\",
            "\\4",
            "\\40",
            "a\\",
            "\\é",
            "é\\4é",
            "\\\u{10FFFF}0",
            "",
            "@@@",
        ] {
            let once = unescape(input);
            assert_eq!(unescape(&escape(&once)), once, "round trip of {input:?}");
        }
    }

    #[test]
    fn round_trips_whole_bare_jids() {
        for jid in [
            "me@remote.net",
            "remote.net",
            r"odd\40name@x.org",
            "a b@c.d",
            r"c:\5c@x",
        ] {
            let escaped = escape(jid);
            assert!(!escaped.contains('@'), "{escaped} still holds an @");
            assert_eq!(unescape(&escaped), jid);
        }
    }

    #[test]
    fn round_trips_every_string_over_a_small_alphabet() {
        // Exhaustive over short strings of the characters that matter.
        let alphabet = ['\\', '@', '2', '0', '4', '5', 'c', 'a', ' ', 'é'];
        let mut stack = vec![String::new()];
        while let Some(s) = stack.pop() {
            assert_eq!(unescape(&escape(&s)), s, "round trip of {s:?}");
            assert_eq!(escape(&s), escape_char_by_char(&s), "escape of {s:?}");
            if s.chars().count() < 5 {
                for c in alphabet {
                    let mut next = s.clone();
                    next.push(c);
                    stack.push(next);
                }
            }
        }
    }

    /// The first, character-by-character `escape`: the faster one must name
    /// every contact exactly as it did, or rosters would change.
    fn escape_char_by_char(input: &str) -> String {
        let mut out = String::new();
        for (i, c) in input.char_indices() {
            match code_of(c) {
                Some(_) if c == '\\' && !starts_with_code(&input[i + 1..]) => out.push('\\'),
                Some(code) => {
                    out.push('\\');
                    out.push_str(code);
                }
                None => out.push(c),
            }
        }
        out
    }
}
