// The JavaScript default policy, natively: a few cases of each section.
// Its full check is the Rust default's scenario files, run through
// `pizzja policy test` on the built component (host/tests/languages.rs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { init, decide } from '../default-policy.js';

const facts = (controllers = [], sessions = []) => ({
  localJid: 'alice@local.test',
  foreignJid: 'alice@foreign.test',
  gateway: 'gw.local.test',
  controllers: controllers.map((resource) => ({
    resource, show: undefined, status: undefined, priority: 0, onlineSinceMs: 0n, lastActiveMs: 0n,
  })),
  sessions: sessions.map(([resource, state]) => ({ resource, state })),
  nowMs: 0n,
});

const local = (kind, type, to, senderResource, xml = '<x/>') => ({
  tag: 'local',
  val: {
    stanza: { kind, type, id: 'i1', from: `alice@local.test/${senderResource}`, to, xml },
    senderResource,
    answers: undefined,
  },
});

test('the first controller of A opens F/A', () => {
  init([]);
  const actions = decide(local('presence', '', 'gw.local.test', 'Work/phone'), facts(['Work/phone']));
  assert.deepEqual(actions, [{ tag: 'open-session', val: 'Work' }]);
});

test('a message to x@T leaves through F/A to unesc(x)', () => {
  const actions = decide(
    local('message', 'chat', 'bob\\40foreign.test@gw.local.test/desk', 'Work/phone'),
    facts(['Work/phone'], [['Work', 'online']]),
  );
  assert.deepEqual(actions, [{
    tag: 'send-foreign',
    val: { session: 'Work', to: 'bob@foreign.test/desk', content: { tag: 'original' }, ties: [] },
  }]);
});

test('a message from a resource that is not online is refused', () => {
  const [action] = decide(
    local('message', 'chat', 'bob\\40foreign.test@gw.local.test', 'Work/phone'),
    facts([], [['Work', 'online']]),
  );
  assert.equal(action.tag, 'reply-error');
  assert.equal(action.val.condition, 'service-unavailable');
});

test('what F/A receives goes to every controller of A', () => {
  const event = {
    tag: 'foreign',
    val: {
      session: 'Work',
      stanza: { kind: 'message', type: 'chat', id: undefined, from: 'bob@foreign.test/desk', to: 'alice@foreign.test/Work', xml: '<x/>' },
      answers: undefined,
    },
  };
  const actions = decide(event, facts(['Work/phone', 'Home/pc', 'Work/laptop'], [['Work', 'online']]));
  assert.deepEqual(actions.map((a) => [a.val.toResource, a.val.fromNode, a.val.fromResource]), [
    ['Work/phone', 'bob\\40foreign.test', 'desk'],
    ['Work/laptop', 'bob\\40foreign.test', 'desk'],
  ]);
});

test('init refuses an unknown initial_presence', () => {
  assert.throws(() => init([['initial_presence', 'sometimes']]), /initial_presence must be/);
  init([]);
});
