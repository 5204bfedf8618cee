// A hostile policy in JavaScript, for the host's sandbox tests: the
// default policy, except that a local message whose body is one of the
// words below makes it misbehave (as policies/test-hostile does in Rust).
//
// - `trap`: throws an Error nobody catches.
// - `loop`: never returns.
// - `grow`: allocates far more memory than any cap allows.
// - `forge`: returns actions that try to break the host's invariants.
// - `clock`: logs what the clocks say.
// - `print`: writes to stdout and stderr, then decides as usual.
// - `print-and-trap`: writes to stderr, then throws.
// - `net`: tries an HTTP request and logs what it met.
// - `remember <text>` / `recall` / `fill`: the account's store.
// - `nothing`: decides nothing.
//
// With `always = "<word>"` in its configuration every event carries that word.
import * as defaults from '../../guest-sdk-js/default-policy.js';
import { xml, store, debug, sendLocalXml, sendLocalFromGateway } from '../../guest-sdk-js/src/index.js';

let always;

export function init(pairs) {
  defaults.init(pairs);
  always = new Map(pairs).get('always');
}

function word(event) {
  if (always !== undefined) return always;
  return event.tag === 'local' ? xml.bodyOf(event.val.stanza.xml) : undefined;
}

export function decide(event, facts) {
  const w = word(event);
  switch (w) {
    case 'trap':
      throw new Error('hostile policy throws on purpose');
    case 'loop':
      for (;;) { /* never returns */ }
    case 'grow': {
      const kept = [];
      for (;;) kept.push(new Array(1 << 20).fill(7));
    }
    case 'forge': {
      const sender = event.tag === 'local' ? event.val.senderResource : undefined;
      return [
        // Another account as the target, and a sender outside T.
        sendLocalXml('x/../../carol@local.test', 'evil@elsewhere.example', undefined, xml.chat('to another account')),
        // Addresses written into the XML itself.
        sendLocalFromGateway(sender,
          "<message type='chat' to='carol@local.test' from='admin@local.test'><body>forged</body></message>"),
        // A session that is not this account's.
        { tag: 'send-foreign', val: { session: 'NotMine', to: 'bob@foreign.test', content: { tag: 'original' }, ties: [] } },
      ];
    }
    case 'clock':
      return [debug(`clock: ${Date.now()} ${performance.now()}`)];
    case 'print':
      console.log('to stdout');
      console.error('to stderr');
      return defaults.decide(event, facts);
    case 'print-and-trap':
      console.error('to stderr');
      throw new Error('hostile: thrown on purpose');
    case 'net': {
      // fetch() starts the request synchronously; a refusal that reaches
      // JavaScript rejects the promise, one that does not ends the call.
      let said = 'net: fetch returned';
      try {
        fetch('http://127.0.0.1:5222/').then(() => {}, () => {});
      } catch (e) {
        said = `net: fetch threw ${e}`;
      }
      return [debug(said)];
    }
    case 'recall':
      return [debug(`memo: ${JSON.stringify(store.getText('memo') ?? null)}`)];
    case 'fill':
      try {
        store.set('big', new Uint8Array(70 * 1024));
        return [debug('stored')];
      } catch (e) {
        return [debug(`refused: ${e.message}`)];
      }
    case 'nothing':
      return [];
    default:
      if (w !== undefined && w.startsWith('remember ')) {
        try {
          store.set('memo', w.slice('remember '.length));
          return [debug('stored')];
        } catch (e) {
          return [debug(`refused: ${e.message}`)];
        }
      }
      return defaults.decide(event, facts);
  }
}
