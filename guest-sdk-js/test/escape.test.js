import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escape, unescape } from '../src/index.js';

// XEP-0106 section 5, Table 3: (unescaped localpart, escaped localpart).
const XEP_EXAMPLES = [
  ['space cadet', 'space\\20cadet'],
  ['call me "ishmael"', 'call\\20me\\20\\22ishmael\\22'],
  ['at&t guy', 'at\\26t\\20guy'],
  ["d'artagnan", 'd\\27artagnan'],
  ['/.fanboy', '\\2f.fanboy'],
  ['::foo::', '\\3a\\3afoo\\3a\\3a'],
  ['<foo>', '\\3cfoo\\3e'],
  ['user@host', 'user\\40host'],
  ['c:\\net', 'c\\3a\\net'],
  ['c:\\\\net', 'c\\3a\\\\net'],
  ['c:\\cool stuff', 'c\\3a\\cool\\20stuff'],
  ['c:\\5commas', 'c\\3a\\5c5commas'],
];

test('escapes every example of XEP-0106', () => {
  for (const [plain, escaped] of XEP_EXAMPLES) assert.equal(escape(plain), escaped, plain);
});

test('unescapes every example of XEP-0106', () => {
  for (const [plain, escaped] of XEP_EXAMPLES) assert.equal(unescape(escaped), plain, escaped);
});

test('a whole bare JID becomes one localpart', () => {
  assert.equal(escape('contact@remote.net'), 'contact\\40remote.net');
  assert.equal(unescape('contact\\40remote.net'), 'contact@remote.net');
});

test('unknown sequences and a trailing backslash are kept', () => {
  assert.equal(unescape('trailing\\'), 'trailing\\');
  assert.equal(unescape('a\\zzb'), 'a\\zzb');
  assert.equal(unescape('\\4'), '\\4');
});

test('escape then unescape gives back any string', () => {
  const alphabet = [' ', '"', '&', "'", '/', ':', '<', '>', '@', '\\', 'a', '5', 'c', '2', '0', 'é'];
  let seed = 7;
  for (let n = 0; n < 2000; n++) {
    let s = '';
    const len = n % 12;
    for (let i = 0; i < len; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      s += alphabet[seed % alphabet.length];
    }
    assert.equal(unescape(escape(s)), s, JSON.stringify(s));
  }
});
