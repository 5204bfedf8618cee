// Allow-list: the default policy, limited to the foreign contacts and
// domains the operator lists. The same behaviour, configuration and
// scenario file as the Rust example (../allow-list).
import * as defaults from '../../../guest-sdk-js/default-policy.js';
import { unescape, parseJid, bare, toParts, fromParts, replyError, debug } from '../../../guest-sdk-js/src/index.js';

let everyone = [];
let perAccount = [];

function list(text) {
  return (text ?? '').split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== '');
}

export function init(pairs) {
  defaults.init(pairs);
  everyone = list(new Map(pairs).get('allow'));
  perAccount = pairs
    .filter(([key]) => key.startsWith('allow:'))
    .map(([key, value]) => [key.slice('allow:'.length).toLowerCase(), list(value)]);
}

/**
 * May this account exchange stanzas with `jid`? Its own account and server
 * always may (roster pushes, disco of the server).
 */
export function allowed(facts, jid) {
  const jidBare = bare(jid).toLowerCase();
  const domain = jid.domain.toLowerCase();
  const own = facts.foreignJid.toLowerCase();
  if (jidBare === own || (own.endsWith(`@${domain}`) && jid.node === undefined)) return true;
  const local = facts.localJid.toLowerCase();
  const mine = perAccount.filter(([l]) => l === local).flatMap(([, l]) => l);
  return [...everyone, ...mine].some((a) => a === jidBare || a === domain);
}

export function decide(event, facts) {
  if (event.tag === 'foreign') {
    const sender = fromParts(event.val.stanza);
    if (sender !== undefined && !allowed(facts, sender)) {
      return [debug('dropped a stanza from a contact not on the allow-list')];
    }
  } else if (event.tag === 'local') {
    const node = toParts(event.val.stanza)?.node;
    const jid = node === undefined ? undefined : parseJid(unescape(node));
    if (jid !== undefined && !allowed(facts, jid)) {
      return [replyError('cancel', 'not-allowed', `${bare(jid)} is not on this gateway's allow-list`)];
    }
  }
  return defaults.decide(event, facts);
}
