// pizzja-sdk for JavaScript: what a Pizzja policy needs besides its own
// rules. A policy module exports `init(config)` and `decide(event, facts)`
// (the WIT world `pizzja:policy/policy`); see docs/writing-policies.md.

export { escape, unescape } from './escape.js';
export { parseJid, bare, full, splitResource } from './jid.js';
export * as xml from './xml.js';
export * as store from './store.js';
export * from './policy.js';
