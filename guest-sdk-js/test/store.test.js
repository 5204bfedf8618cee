import { test, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { store } from '../src/index.js';
import { reset } from 'pizzja:policy/store@0.2.0';

beforeEach(() => reset());

test('text and bytes go in and come out', () => {
  store.set('memo', 'héllo');
  assert.equal(store.getText('memo'), 'héllo');
  store.set('raw', new Uint8Array([1, 2, 3]));
  assert.deepEqual([...store.get('raw')], [1, 2, 3]);
  store.remove('raw');
  assert.equal(store.get('raw'), undefined);
});

test('a refused value throws an Error saying why', () => {
  assert.throws(() => store.set('big', new Uint8Array(70 * 1024)), /the limit is 65536/);
  assert.equal(store.get('big'), undefined);
});
