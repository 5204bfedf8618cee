"""Builders for the stanzas a policy writes itself."""

from typing import Optional

_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


def escape_text(text: str) -> str:
    """Escapes text for an XML text node or attribute value."""
    return "".join(_ENTITIES.get(c, c) for c in text)


def presence(type_: str = "", show: Optional[str] = None, status: Optional[str] = None,
             priority: Optional[int] = None) -> str:
    """A presence stanza: `type_` empty for available; optional show,
    status and priority."""
    out = "<presence xmlns='jabber:client'"
    if type_:
        out += f" type='{escape_text(type_)}'"
    out += ">"
    if show is not None:
        out += f"<show>{escape_text(show)}</show>"
    if status is not None:
        out += f"<status>{escape_text(status)}</status>"
    if priority is not None:
        out += f"<priority>{int(priority)}</priority>"
    return out + "</presence>"


def chat(body: str) -> str:
    """A chat message with a body."""
    return f"<message xmlns='jabber:client' type='chat'><body>{escape_text(body)}</body></message>"


def body_of(xml: str) -> Optional[str]:
    """The text of the first ``<body>`` of a stanza's XML, unescaped no further."""
    start = xml.find("<body>")
    if start < 0:
        return None
    end = xml.find("</body>", start)
    return None if end < 0 else xml[start + 6:end]
