"""JIDs split into parts, as the gateway's addresses need them; not a full
RFC 7622 validator (the host checks every address it sends)."""

from dataclasses import dataclass, replace
from typing import Optional, Tuple


@dataclass(frozen=True)
class JidParts:
    """A JID's node, domain and resource."""

    node: Optional[str]
    domain: str
    resource: Optional[str] = None

    @staticmethod
    def parse(jid: Optional[str]) -> Optional["JidParts"]:
        """The parts of `jid`, or None when it cannot be a JID (an empty
        part, a second '@', a trailing '/')."""
        if jid is None:
            return None
        bare, slash, resource = jid.partition("/")
        if slash and not resource:
            return None
        node, at, domain = bare.rpartition("@")
        if not at:
            node, domain = None, bare
        elif not node or "@" in node:
            return None
        if not domain:
            return None
        return JidParts(node, domain, resource or None)

    def bare(self) -> str:
        """``node@domain``, or ``domain``."""
        return self.domain if self.node is None else f"{self.node}@{self.domain}"

    def full(self) -> str:
        """``node@domain/resource``, with the parts that are there."""
        return self.bare() if self.resource is None else f"{self.bare()}/{self.resource}"

    def with_resource(self, resource: Optional[str]) -> "JidParts":
        """The same JID with another resource (or none)."""
        return replace(self, resource=resource)


def split_resource(resource: str) -> Tuple[str, str]:
    """A local resource ``A/B`` split at its first '/': ``(A, B)``, B empty
    when there is none. A names the foreign session the resource controls."""
    a, _, b = resource.partition("/")
    return a, b
