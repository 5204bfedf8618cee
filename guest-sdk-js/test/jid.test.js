import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseJid, bare, full, splitResource } from '../src/index.js';

test('parses full, bare and domain JIDs', () => {
  const j = parseJid('alice@example.org/Work/phone');
  assert.deepEqual(j, { node: 'alice', domain: 'example.org', resource: 'Work/phone' });
  assert.equal(bare(j), 'alice@example.org');
  assert.equal(full(j), 'alice@example.org/Work/phone');
  const d = parseJid('remote.net');
  assert.deepEqual(d, { node: undefined, domain: 'remote.net', resource: undefined });
  assert.equal(full(d), 'remote.net');
});

test('refuses what cannot be a JID', () => {
  for (const bad of ['', '@x', 'a@', 'a@b@c', 'x/', '/r', 'a@/r', undefined]) {
    assert.equal(parseJid(bad), undefined, String(bad));
  }
});

test('a local resource splits at its first slash', () => {
  assert.deepEqual(splitResource('Work/phone/2'), ['Work', 'phone/2']);
  assert.deepEqual(splitResource('Work'), ['Work', '']);
});
