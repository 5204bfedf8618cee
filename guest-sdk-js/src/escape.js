// XEP-0106: JID Escaping, applied to a whole bare JID.
//
// The gateway names a foreign JID J as esc(J)@T: the whole bare JID, '@'
// included, becomes one localpart. Both functions are total: they accept
// any string and never throw.

/** The ten characters XEP-0106 section 3.2 escapes, with their codes. */
const CODES = new Map([
  [' ', '20'], ['"', '22'], ['&', '26'], ["'", '27'], ['/', '2f'],
  [':', '3a'], ['<', '3c'], ['>', '3e'], ['@', '40'], ['\\', '5c'],
]);
const CHARS = new Map([...CODES].map(([c, code]) => [code, c]));

/** True when `s` starts, at `i`, with one of the ten escape codes. */
function codeAt(s, i) {
  return CHARS.has(s.slice(i, i + 2));
}

/**
 * Escapes a string into a JID localpart (XEP-0106 section 4.2). A backslash
 * is escaped only where it would otherwise start an escape sequence.
 * @param {string} input
 * @returns {string}
 */
export function escape(input) {
  let out = '';
  for (let i = 0; i < input.length; i++) {
    const c = input[i];
    const code = CODES.get(c);
    if (code === undefined || (c === '\\' && !codeAt(input, i + 1))) {
      out += c;
    } else {
      out += '\\' + code;
    }
  }
  return out;
}

/**
 * Unescapes a JID localpart (XEP-0106 section 4.3). Only the ten defined
 * sequences are decoded; any other backslash is kept as it is.
 * @param {string} input
 * @returns {string}
 */
export function unescape(input) {
  let out = '';
  let i = 0;
  while (i < input.length) {
    const c = input[i];
    if (c === '\\' && codeAt(input, i + 1)) {
      out += CHARS.get(input.slice(i + 1, i + 3));
      i += 3;
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}
