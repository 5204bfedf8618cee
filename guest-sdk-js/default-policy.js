// The default Pizzja policy in JavaScript: the behaviour of
// docs/behaviour.md sections 3 to 5 and 9, as the Rust default
// (policies/default) implements it. It passes the Rust default's scenario
// files, which shows the SDK has what a complete policy needs.

import {
  escape, unescape, parseJid, bare, full, splitResource, xml,
  isIqRequest, isIqResponse, toParts, fromParts, controller, controllersOf, session,
  foreignNode, forwardForeign, sendForeignXml, forwardLocal, sendLocalFromGateway,
  sendLocalXml, openSession, closeSession, replyError, debug, configOf,
} from './src/index.js';

/** docs/behaviour.md section 9: available presence when a session comes online. */
let initialPresence = true;

export function init(pairs) {
  const value = configOf(pairs).get('initial_presence');
  if (value === undefined || value === 'available') {
    initialPresence = true;
  } else if (value === 'none') {
    initialPresence = false;
  } else {
    throw `initial_presence must be "available" or "none", not ${JSON.stringify(value)}`;
  }
}

export function decide(event, facts) {
  switch (event.tag) {
    case 'local': {
      const node = toParts(event.val.stanza)?.node;
      return node === undefined
        ? toTheGateway(event.val, facts)
        : localToForeign(event.val, node, facts);
    }
    case 'foreign':
      return foreignToLocal(event.val, facts);
    case 'session':
      return sessionChanged(event.val, facts);
    default:
      return [];
  }
}

/** docs/behaviour.md section 3: sessions follow local presence sent to T. */
function toTheGateway(local, facts) {
  const { stanza } = local;
  if (stanza.kind === 'presence') {
    const resource = local.senderResource;
    if (stanza.type === '') {
      if (resource === undefined) return [];
      const [a] = splitResource(resource);
      // The first controller of A opens F/A; a failed session is retried.
      const s = session(facts, a);
      return s !== undefined && s.state !== 'failed' ? [] : [openSession(a)];
    }
    if (stanza.type === 'unavailable') {
      if (resource === undefined) return [];
      const [a] = splitResource(resource);
      // The host has already taken the resource off the controllers.
      return controllersOf(facts, a).length === 0 && session(facts, a) !== undefined
        ? [closeSession(a)]
        : [];
    }
    if (stanza.type === 'probe') {
      return [sendLocalFromGateway(undefined, xml.presence(''))];
    }
    return [];
  }
  if (stanza.kind === 'message') {
    if (stanza.type === 'error') return [];
    return [replyError('cancel', 'service-unavailable',
      `the gateway itself takes no messages: write to a contact as ${escape('contact@example.net')}@${facts.gateway}`)];
  }
  // IQs to T itself are the host's (registration, disco, ping, version).
  return [];
}

/**
 * docs/behaviour.md section 4: a stanza from L/A/B to x@T[/r] leaves
 * through F/A addressed to unesc(x)[/r].
 */
function localToForeign(local, node, facts) {
  const { stanza } = local;

  // An answer to a request from the foreign side goes back through the
  // session it came in on, to whoever asked.
  if (isIqResponse(stanza)) {
    const request = local.answers;
    if (request === undefined) return [debug('dropping an IQ answer that matches no request')];
    if (isRosterPush(request, facts)) return [debug('roster push copies were acknowledged already')];
    return [forwardForeign(request.requester, request.peer)];
  }

  let sessionName;
  const resource = local.senderResource;
  if (resource !== undefined) {
    if (controller(facts, resource) === undefined) {
      return [replyError('cancel', 'service-unavailable',
        `resource ${resource} is not online at ${facts.gateway}: send presence to ${facts.gateway} first`)];
    }
    [sessionName] = splitResource(resource);
  } else {
    // Subscription requests and probes carry the bare JID: they leave
    // through the most recently active controller's session.
    const first = facts.controllers[0];
    if (first === undefined) {
      return [replyError('cancel', 'service-unavailable',
        `no controller is online: send presence to ${facts.gateway} first`)];
    }
    [sessionName] = splitResource(first.resource);
  }

  const s = session(facts, sessionName);
  if (s === undefined || s.state === 'failed' || s.state === 'closed') {
    return [replyError('wait', 'service-unavailable', `the foreign session ${sessionName} is not connected`)];
  }

  const jid = parseJid(unescape(node));
  if (jid === undefined || jid.resource !== undefined) {
    return [replyError('modify', 'jid-malformed', `${JSON.stringify(node)} does not unescape to a bare JID`)];
  }
  const toResource = toParts(stanza)?.resource;

  if (stanza.kind === 'presence' && stanza.type === 'probe') {
    return [debug('probes to foreign contacts are not forwarded')];
  }
  const isAvailability = stanza.kind === 'presence' && (stanza.type === '' || stanza.type === 'unavailable');
  // Presence to the foreign account itself sets F/A's own presence.
  if (isAvailability && toResource === undefined && bare(jid) === facts.foreignJid) {
    return [forwardForeign(sessionName, undefined)];
  }
  // Broadcasts go to bare JIDs and stay local; directed presence goes to a
  // full JID (x@T/r).
  if (isAvailability && toResource === undefined) {
    return [debug('local presence broadcast to a contact stays local')];
  }
  return [forwardForeign(sessionName, full({ ...jid, resource: toResource }))];
}

/** A roster push (RFC 6121 section 2.1.6) from the account's own server. */
function isRosterPush(request, facts) {
  return request.payloadNs === 'jabber:iq:roster'
    && (request.peer === undefined || request.peer === facts.foreignJid);
}

/**
 * docs/behaviour.md section 5: what F/A receives comes back to the
 * controllers of A, from esc(bare(J))@T[/resource(J)].
 */
function foreignToLocal(foreign, facts) {
  const { stanza } = foreign;
  const a = foreign.session;
  // No 'from' means the account's own server (RFC 6120 section 8.1.2.1).
  const sender = fromParts(stanza) ?? { domain: facts.foreignJid };
  const fromNode = escape(bare(sender));
  const deliverTo = (resource) => forwardLocal(resource, fromNode, sender.resource);

  if (isIqResponse(stanza)) {
    return foreign.answers === undefined
      ? [debug('dropping an IQ answer that matches no request')]
      : [deliverTo(foreign.answers.requester)];
  }
  // docs/behaviour.md section 10: a message tied to a controller's request
  // goes to that controller only.
  if (foreign.answers !== undefined) return [deliverTo(foreign.answers.requester)];

  if (isIqRequest(stanza)) {
    const fromOwnAccount = stanza.from === undefined || bare(sender) === facts.foreignJid;
    if (fromOwnAccount && stanza.type === 'set' && stanza.xml.includes('jabber:iq:roster')) {
      // A roster push: acknowledged here, copied to every controller.
      const ack = `<iq xmlns='jabber:client' type='result' id='${xml.escapeText(stanza.id ?? '')}'/>`;
      return [sendForeignXml(a, undefined, ack), ...controllersOf(facts, a).map((c) => deliverTo(c.resource))];
    }
    // Other requests go to the most recently active controller of A.
    const first = controllersOf(facts, a)[0];
    return first === undefined
      ? [replyError('cancel', 'service-unavailable', 'no controller of this resource is online')]
      : [deliverTo(first.resource)];
  }
  // Messages and presence: to every online controller of A.
  return controllersOf(facts, a).map((c) => deliverTo(c.resource));
}

/**
 * docs/behaviour.md section 9 (initial presence), section 4 (controllers
 * are told why a login failed) and section 7 (controllers see F/A go and
 * come back when a gap could not be hidden).
 */
function sessionChanged(change, facts) {
  const a = change.session;
  switch (change.state) {
    case 'online':
      // Back after a gap: the host restored F/A's last presence itself.
      if (change.reason !== undefined) return presenceToControllers(a, '', undefined, facts);
      return initialPresence ? [sendForeignXml(a, undefined, xml.presence('', { priority: 0 }))] : [];
    case 'reconnecting':
      return presenceToControllers(a, 'unavailable', change.reason, facts);
    case 'failed': {
      const text = `could not connect ${facts.foreignJid}/${a}: ${change.reason ?? 'unknown reason'}`;
      return controllersOf(facts, a).map((c) => sendLocalFromGateway(c.resource, xml.chat(text)));
    }
    default:
      return [];
  }
}

/** F/A's own presence, as esc(F)@T/A, to each controller of A. */
function presenceToControllers(a, type, status, facts) {
  const stanza = xml.presence(type, { status });
  return controllersOf(facts, a).map((c) => sendLocalXml(c.resource, foreignNode(facts), a, stanza));
}
