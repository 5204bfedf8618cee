// The WIT world's values as JavaScript sees them (componentize-js): records
// are objects with camelCase fields, variants are `{tag, val}` with the
// case's WIT name as tag, enums are their WIT names, `option` is a value or
// `undefined`, `u64` a BigInt. These helpers read facts and stanzas and
// build actions, as the Rust SDK's do.

import { escape } from './escape.js';
import { parseJid, splitResource } from './jid.js';

/** The configuration `init` receives, as a Map. */
export function configOf(pairs) {
  return new Map(pairs);
}

/** True for a stanza of type `error`. */
export function isError(stanza) {
  return stanza.type === 'error';
}

/** True for an IQ of type `get` or `set` (a request). */
export function isIqRequest(stanza) {
  return stanza.kind === 'iq' && (stanza.type === 'get' || stanza.type === 'set');
}

/** True for an IQ of type `result` or `error` (an answer). */
export function isIqResponse(stanza) {
  return stanza.kind === 'iq' && (stanza.type === 'result' || stanza.type === 'error');
}

/** The stanza's `to` split into parts, or `undefined`. */
export function toParts(stanza) {
  return parseJid(stanza.to);
}

/** The stanza's `from` split into parts, or `undefined`. */
export function fromParts(stanza) {
  return parseJid(stanza.from);
}

/** The online controller with exactly this local resource, if any. */
export function controller(facts, resource) {
  return facts.controllers.find((c) => c.resource === resource);
}

/**
 * The online controllers of foreign resource `a` (local resources `a/*`,
 * and `a` itself), most recently active first.
 */
export function controllersOf(facts, a) {
  return facts.controllers.filter((c) => splitResource(c.resource)[0] === a);
}

/** The foreign session with resource `a`, if it exists. */
export function session(facts, a) {
  return facts.sessions.find((s) => s.resource === a);
}

/** The gateway localpart naming the foreign account itself: esc(F). */
export function foreignNode(facts) {
  return escape(facts.foreignJid);
}

/** Sends the event's stanza through foreign session `session` to `to`. */
export function forwardForeign(session, to) {
  return { tag: 'send-foreign', val: { session, to, content: { tag: 'original' }, ties: [] } };
}

/** Sends a stanza the policy wrote through foreign session `session`. */
export function sendForeignXml(session, to, xml) {
  return { tag: 'send-foreign', val: { session, to, content: { tag: 'xml', val: xml }, ties: [] } };
}

/**
 * The same send-foreign action, with the messages answering its request
 * tied to the controller that sent it (see `request-tie` in the WIT).
 */
export function tied(action, { namespace, request, reply, attribute }) {
  if (action.tag === 'send-foreign') {
    action.val.ties.push({ namespace, request, reply, attribute });
  }
  return action;
}

/**
 * Sends the event's stanza to the account's resource `toResource`, from
 * `fromNode@T/fromResource`.
 */
export function forwardLocal(toResource, fromNode, fromResource) {
  return {
    tag: 'send-local',
    val: { toResource, fromNode, fromResource, content: { tag: 'original' } },
  };
}

/** Sends a stanza the policy wrote to the account's resource (or bare JID), from the gateway. */
export function sendLocalFromGateway(toResource, xml) {
  return {
    tag: 'send-local',
    val: { toResource, fromNode: undefined, fromResource: undefined, content: { tag: 'xml', val: xml } },
  };
}

/** Sends a stanza the policy wrote to the account, from `fromNode@T/fromResource`. */
export function sendLocalXml(toResource, fromNode, fromResource, xml) {
  return { tag: 'send-local', val: { toResource, fromNode, fromResource, content: { tag: 'xml', val: xml } } };
}

/** Opens the foreign session `a` (F/a). */
export function openSession(a) {
  return { tag: 'open-session', val: a };
}

/** Closes the foreign session `a`. */
export function closeSession(a) {
  return { tag: 'close-session', val: a };
}

/** The error types of RFC 6120 section 8.3.2. */
export const ErrorType = Object.freeze({
  auth: 'auth', cancel: 'cancel', continue: 'continue', modify: 'modify', wait: 'wait',
});

/** Answers the event's stanza with an error: a type, a condition, a text. */
export function replyError(type, condition, text) {
  return { tag: 'reply-error', val: { type, condition, text } };
}

/** A line for the host's log at `level` (trace, debug, info, warn, error). */
export function log(level, message) {
  return { tag: 'log', val: { level, message: String(message) } };
}

/** A debug line for the host's log. */
export function debug(message) {
  return log('debug', message);
}
