"""Helpers over the WIT world's types (componentize-py's bindings, module
``wit_world.imports.types``): reading facts and stanzas, building actions,
as the Rust SDK's do."""

from typing import Iterable, List, Optional

from wit_world.imports import types as t

from .escape import escape
from .jid import JidParts, split_resource

ErrorType = t.ErrorType
LogLevel = t.LogLevel
StanzaKind = t.StanzaKind
SessionState = t.SessionState


def is_error(stanza: t.Stanza) -> bool:
    """True for a stanza of type ``error``."""
    return stanza.type == "error"


def is_iq_request(stanza: t.Stanza) -> bool:
    """True for an IQ of type ``get`` or ``set`` (a request)."""
    return stanza.kind == t.StanzaKind.IQ and stanza.type in ("get", "set")


def is_iq_response(stanza: t.Stanza) -> bool:
    """True for an IQ of type ``result`` or ``error`` (an answer)."""
    return stanza.kind == t.StanzaKind.IQ and stanza.type in ("result", "error")


def to_parts(stanza: t.Stanza) -> Optional[JidParts]:
    """The stanza's ``to`` split into parts."""
    return JidParts.parse(stanza.to)


def from_parts(stanza: t.Stanza) -> Optional[JidParts]:
    """The stanza's ``from`` split into parts."""
    return JidParts.parse(stanza.from_)


def controller(facts: t.Facts, resource: str) -> Optional[t.Controller]:
    """The online controller with exactly this local resource, if any."""
    return next((c for c in facts.controllers if c.resource == resource), None)


def controllers_of(facts: t.Facts, a: str) -> List[t.Controller]:
    """The online controllers of foreign resource `a` (local resources
    ``a/*``, and ``a`` itself), most recently active first."""
    return [c for c in facts.controllers if split_resource(c.resource)[0] == a]


def session(facts: t.Facts, a: str) -> Optional[t.Session]:
    """The foreign session with resource `a`, if it exists."""
    return next((s for s in facts.sessions if s.resource == a), None)


def foreign_node(facts: t.Facts) -> str:
    """The gateway localpart naming the foreign account itself: esc(F)."""
    return escape(facts.foreign_jid)


def forward_foreign(session: str, to: Optional[str]) -> t.Action:
    """Sends the event's stanza through foreign session `session` to `to`."""
    return t.Action_SendForeign(t.SendForeign(session, to, t.Content_Original(), []))


def send_foreign_xml(session: str, to: Optional[str], xml: str) -> t.Action:
    """Sends a stanza the policy wrote through foreign session `session`."""
    return t.Action_SendForeign(t.SendForeign(session, to, t.Content_Xml(xml), []))


def tied(action: t.Action, namespace: str, request: str, reply: str, attribute: str) -> t.Action:
    """The same send-foreign action, with the messages answering its
    request tied to the controller that sent it (``request-tie`` in the WIT)."""
    if isinstance(action, t.Action_SendForeign):
        action.value.ties.append(t.RequestTie(namespace, request, reply, attribute))
    return action


def forward_local(to_resource: Optional[str], from_node: Optional[str],
                  from_resource: Optional[str]) -> t.Action:
    """Sends the event's stanza to the account's resource `to_resource`,
    from ``from_node@T/from_resource``."""
    return t.Action_SendLocal(t.SendLocal(to_resource, from_node, from_resource, t.Content_Original()))


def send_local_xml(to_resource: Optional[str], from_node: Optional[str],
                   from_resource: Optional[str], xml: str) -> t.Action:
    """Sends a stanza the policy wrote to the account, from ``from_node@T/from_resource``."""
    return t.Action_SendLocal(t.SendLocal(to_resource, from_node, from_resource, t.Content_Xml(xml)))


def send_local_from_gateway(to_resource: Optional[str], xml: str) -> t.Action:
    """Sends a stanza the policy wrote to the account's resource (or bare
    JID), from the gateway itself."""
    return send_local_xml(to_resource, None, None, xml)


def open_session(a: str) -> t.Action:
    """Opens the foreign session `a` (F/a)."""
    return t.Action_OpenSession(a)


def close_session(a: str) -> t.Action:
    """Closes the foreign session `a`."""
    return t.Action_CloseSession(a)


def reply_error(type_: t.ErrorType, condition: str, text: Optional[str]) -> t.Action:
    """Answers the event's stanza with an error."""
    return t.Action_ReplyError(t.StanzaError(type_, condition, text))


def log(level: t.LogLevel, message: str) -> t.Action:
    """A line for the host's log."""
    return t.Action_Log(t.LogLine(level, str(message)))


def debug(message: str) -> t.Action:
    """A debug line for the host's log."""
    return log(t.LogLevel.DEBUG, message)


def config_of(pairs: Iterable) -> dict:
    """The configuration ``init`` receives, as a dict."""
    return dict(pairs)
