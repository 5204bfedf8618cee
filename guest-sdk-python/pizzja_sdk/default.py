"""The default Pizzja policy in Python: the behaviour of docs/behaviour.md
sections 3 to 5 and 9, as the Rust default (policies/default) implements
it. It passes the Rust default's scenario files, which shows the SDK has
what a complete policy needs. Policies of your own can start from it:
decide what you want, and hand the rest to ``DefaultPolicy.decide``."""

import json
from typing import List, Optional

from wit_world.imports import types as t

from . import xml
from .escape import escape, unescape
from .jid import JidParts, split_resource
from .policy import (
    close_session, controller, controllers_of, debug, foreign_node, forward_foreign,
    forward_local, from_parts, is_iq_request, is_iq_response, open_session, reply_error,
    send_foreign_xml, send_local_from_gateway, send_local_xml, session, to_parts,
)

E = t.ErrorType
S = t.SessionState


class DefaultPolicy:
    """The default behaviour; `config` is ``[policy.config]`` as a dict."""

    def __init__(self, config: dict):
        value = config.get("initial_presence")
        if value in (None, "available"):
            self.initial_presence = True
        elif value == "none":
            self.initial_presence = False
        else:
            raise ValueError(
                f'initial_presence must be "available" or "none", not {json.dumps(value)}')

    def decide(self, event: t.Event, facts: t.Facts) -> List[t.Action]:
        if isinstance(event, t.Event_Local):
            to = to_parts(event.value.stanza)
            if to is None or to.node is None:
                return to_the_gateway(event.value, facts)
            return local_to_foreign(event.value, to.node, facts)
        if isinstance(event, t.Event_Foreign):
            return foreign_to_local(event.value, facts)
        return self.session_changed(event.value, facts)

    def session_changed(self, change: t.SessionChange, facts: t.Facts) -> List[t.Action]:
        """Section 9 (initial presence), section 4 (controllers are told
        why a login failed) and section 7 (controllers see F/A go and come
        back when a gap could not be hidden)."""
        a = change.session
        if change.state == S.ONLINE:
            # Back after a gap: the host restored F/A's last presence itself.
            if change.reason is not None:
                return presence_to_controllers(a, "", None, facts)
            if self.initial_presence:
                return [send_foreign_xml(a, None, xml.presence("", priority=0))]
            return []
        if change.state == S.RECONNECTING:
            return presence_to_controllers(a, "unavailable", change.reason, facts)
        if change.state == S.FAILED:
            why = change.reason if change.reason is not None else "unknown reason"
            text = f"could not connect {facts.foreign_jid}/{a}: {why}"
            return [send_local_from_gateway(c.resource, xml.chat(text))
                    for c in controllers_of(facts, a)]
        return []


def to_the_gateway(local: t.LocalStanza, facts: t.Facts) -> List[t.Action]:
    """Section 3: sessions follow local presence sent to T."""
    stanza = local.stanza
    resource = local.sender_resource
    if stanza.kind == t.StanzaKind.PRESENCE:
        if stanza.type == "":
            if resource is None:
                return []
            a = split_resource(resource)[0]
            # The first controller of A opens F/A; a failed session is retried.
            s = session(facts, a)
            return [] if s is not None and s.state != S.FAILED else [open_session(a)]
        if stanza.type == "unavailable":
            if resource is None:
                return []
            a = split_resource(resource)[0]
            # The host has already taken the resource off the controllers.
            if not controllers_of(facts, a) and session(facts, a) is not None:
                return [close_session(a)]
            return []
        if stanza.type == "probe":
            return [send_local_from_gateway(None, xml.presence(""))]
        return []
    if stanza.kind == t.StanzaKind.MESSAGE:
        if stanza.type == "error":
            return []
        return [reply_error(
            E.CANCEL, "service-unavailable",
            "the gateway itself takes no messages: write to a contact as "
            f"{escape('contact@example.net')}@{facts.gateway}")]
    # IQs to T itself are the host's (registration, disco, ping, version).
    return []


def local_to_foreign(local: t.LocalStanza, node: str, facts: t.Facts) -> List[t.Action]:
    """Section 4: a stanza from L/A/B to x@T[/r] leaves through F/A
    addressed to unesc(x)[/r]."""
    stanza = local.stanza
    # An answer to a request from the foreign side goes back through the
    # session it came in on, to whoever asked.
    if is_iq_response(stanza):
        request = local.answers
        if request is None:
            return [debug("dropping an IQ answer that matches no request")]
        if is_roster_push(request, facts):
            return [debug("roster push copies were acknowledged already")]
        return [forward_foreign(request.requester, request.peer)]

    resource = local.sender_resource
    if resource is not None:
        if controller(facts, resource) is None:
            return [reply_error(
                E.CANCEL, "service-unavailable",
                f"resource {resource} is not online at {facts.gateway}: "
                f"send presence to {facts.gateway} first")]
        name = split_resource(resource)[0]
    else:
        # Subscription requests and probes carry the bare JID: they leave
        # through the most recently active controller's session.
        if not facts.controllers:
            return [reply_error(
                E.CANCEL, "service-unavailable",
                f"no controller is online: send presence to {facts.gateway} first")]
        name = split_resource(facts.controllers[0].resource)[0]

    s = session(facts, name)
    if s is None or s.state in (S.FAILED, S.CLOSED):
        return [reply_error(E.WAIT, "service-unavailable",
                            f"the foreign session {name} is not connected")]

    jid = JidParts.parse(unescape(node))
    if jid is None or jid.resource is not None:
        return [reply_error(E.MODIFY, "jid-malformed",
                            f"{json.dumps(node)} does not unescape to a bare JID")]
    to = to_parts(stanza)
    to_resource = to.resource if to is not None else None

    if stanza.kind == t.StanzaKind.PRESENCE and stanza.type == "probe":
        return [debug("probes to foreign contacts are not forwarded")]
    availability = stanza.kind == t.StanzaKind.PRESENCE and stanza.type in ("", "unavailable")
    # Presence to the foreign account itself sets F/A's own presence.
    if availability and to_resource is None and jid.bare() == facts.foreign_jid:
        return [forward_foreign(name, None)]
    # Broadcasts go to bare JIDs and stay local; directed presence goes to
    # a full JID (x@T/r).
    if availability and to_resource is None:
        return [debug("local presence broadcast to a contact stays local")]
    return [forward_foreign(name, jid.with_resource(to_resource).full())]


def is_roster_push(request: t.IqRequest, facts: t.Facts) -> bool:
    """A roster push (RFC 6121 section 2.1.6) from the account's own server."""
    return request.payload_ns == "jabber:iq:roster" and (
        request.peer is None or request.peer == facts.foreign_jid)


def foreign_to_local(foreign: t.ForeignStanza, facts: t.Facts) -> List[t.Action]:
    """Section 5: what F/A receives comes back to the controllers of A,
    from esc(bare(J))@T[/resource(J)]."""
    stanza = foreign.stanza
    a = foreign.session
    # No 'from' means the account's own server (RFC 6120 section 8.1.2.1).
    sender = from_parts(stanza) or JidParts(None, facts.foreign_jid)
    from_node = escape(sender.bare())

    def deliver_to(resource: str) -> t.Action:
        return forward_local(resource, from_node, sender.resource)

    if is_iq_response(stanza):
        if foreign.answers is None:
            return [debug("dropping an IQ answer that matches no request")]
        return [deliver_to(foreign.answers.requester)]
    # Section 10: a message tied to a controller's request goes to that
    # controller only.
    if foreign.answers is not None:
        return [deliver_to(foreign.answers.requester)]

    if is_iq_request(stanza):
        from_own_account = stanza.from_ is None or sender.bare() == facts.foreign_jid
        if from_own_account and stanza.type == "set" and "jabber:iq:roster" in stanza.xml:
            # A roster push: acknowledged here, copied to every controller.
            ack = f"<iq xmlns='jabber:client' type='result' id='{xml.escape_text(stanza.id or '')}'/>"
            return [send_foreign_xml(a, None, ack)] + [
                deliver_to(c.resource) for c in controllers_of(facts, a)]
        # Other requests go to the most recently active controller of A.
        mine = controllers_of(facts, a)
        if not mine:
            return [reply_error(E.CANCEL, "service-unavailable",
                                "no controller of this resource is online")]
        return [deliver_to(mine[0].resource)]
    # Messages and presence: to every online controller of A.
    return [deliver_to(c.resource) for c in controllers_of(facts, a)]


def presence_to_controllers(a: str, type_: str, status: Optional[str],
                            facts: t.Facts) -> List[t.Action]:
    """F/A's own presence, as esc(F)@T/A, to each controller of A."""
    stanza = xml.presence(type_, status=status)
    return [send_local_xml(c.resource, foreign_node(facts), a, stanza)
            for c in controllers_of(facts, a)]
