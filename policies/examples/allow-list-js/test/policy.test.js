import { test } from 'node:test';
import assert from 'node:assert/strict';
import { init, decide, allowed } from '../policy.js';
import { parseJid } from '../../../../guest-sdk-js/src/index.js';

const facts = {
  localJid: 'alice@example.org',
  foreignJid: 'me@remote.net',
  gateway: 'gw.example.org',
  controllers: [],
  sessions: [],
  nowMs: 0n,
};

init([['allow', 'bob@remote.net, support.example'], ['allow:alice@example.org', 'carol@remote.net']]);

test('listed contacts, domains and the own account get through', () => {
  for (const jid of ['bob@remote.net/pc', 'anyone@support.example', 'carol@remote.net', 'me@remote.net/Home', 'remote.net']) {
    assert.ok(allowed(facts, parseJid(jid)), jid);
  }
  assert.ok(!allowed(facts, parseJid('mallory@remote.net')));
});

test('stanzas from unlisted contacts are dropped', () => {
  const actions = decide({
    tag: 'foreign',
    val: {
      session: 'Work',
      stanza: { kind: 'message', type: 'chat', id: undefined, from: 'mallory@remote.net/x', to: undefined, xml: '' },
      answers: undefined,
    },
  }, facts);
  assert.ok(actions.every((a) => a.tag === 'log'));
});

test('stanzas to unlisted contacts are refused', () => {
  const actions = decide({
    tag: 'local',
    val: {
      stanza: {
        kind: 'message', type: 'chat', id: undefined,
        from: 'alice@example.org/Work/phone', to: 'mallory\\40remote.net@gw.example.org', xml: '',
      },
      senderResource: 'Work/phone',
      answers: undefined,
    },
  }, facts);
  assert.equal(actions.length, 1);
  assert.equal(actions[0].tag, 'reply-error');
  assert.equal(actions[0].val.condition, 'not-allowed');
});
