"""pizzja_sdk for Python: what a Pizzja policy needs besides its own rules.

A policy is a module defining ``class WitWorld`` with ``init(config)`` and
``decide(event, facts)`` (the WIT world ``pizzja:policy/policy``), built
with componentize-py; see docs/writing-policies.md. The WIT types are
componentize-py's bindings, ``wit_world.imports.types``.
"""

from . import store, xml
from .escape import escape, unescape
from .jid import JidParts, split_resource
from .policy import (
    ErrorType, LogLevel, SessionState, StanzaKind, close_session, config_of, controller,
    controllers_of, debug, foreign_node, forward_foreign, forward_local, from_parts,
    is_error, is_iq_request, is_iq_response, log, open_session, reply_error,
    send_foreign_xml, send_local_from_gateway, send_local_xml, session, tied, to_parts,
)

__all__ = [
    "store", "xml", "escape", "unescape", "JidParts", "split_resource", "ErrorType",
    "LogLevel", "SessionState", "StanzaKind", "close_session", "config_of", "controller",
    "controllers_of", "debug", "foreign_node", "forward_foreign", "forward_local",
    "from_parts", "is_error", "is_iq_request", "is_iq_response", "log", "open_session",
    "reply_error", "send_foreign_xml", "send_local_from_gateway", "send_local_xml",
    "session", "tied", "to_parts",
]
