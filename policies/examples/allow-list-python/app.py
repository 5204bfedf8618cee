"""Allow-list: the default policy, limited to the foreign contacts and
domains the operator lists. The same behaviour, configuration and scenario
file as the Rust example (../allow-list)."""

from wit_world.imports import types as t

from pizzja_sdk import ErrorType, JidParts, debug, from_parts, reply_error, to_parts, unescape
from pizzja_sdk.app import export
from pizzja_sdk.default import DefaultPolicy


def _list(text):
    return [s.strip().lower() for s in (text or "").split(",") if s.strip()]


class AllowList:
    def __init__(self, config):
        self.inner = DefaultPolicy(config)
        self.everyone = _list(config.get("allow"))
        self.per_account = [(key[len("allow:"):].lower(), _list(value))
                            for key, value in config.items() if key.startswith("allow:")]

    def allowed(self, facts, jid):
        """May this account exchange stanzas with `jid`? Its own account
        and server always may (roster pushes, disco of the server)."""
        bare = jid.bare().lower()
        domain = jid.domain.lower()
        own = facts.foreign_jid.lower()
        if bare == own or (own.endswith(f"@{domain}") and jid.node is None):
            return True
        local = facts.local_jid.lower()
        mine = [a for l, allowed in self.per_account if l == local for a in allowed]
        return any(a in (bare, domain) for a in self.everyone + mine)

    def decide(self, event, facts):
        if isinstance(event, t.Event_Foreign):
            sender = from_parts(event.value.stanza)
            if sender is not None and not self.allowed(facts, sender):
                return [debug("dropped a stanza from a contact not on the allow-list")]
        elif isinstance(event, t.Event_Local):
            to = to_parts(event.value.stanza)
            jid = JidParts.parse(unescape(to.node)) if to is not None and to.node else None
            if jid is not None and not self.allowed(facts, jid):
                return [reply_error(ErrorType.CANCEL, "not-allowed",
                                    f"{jid.bare()} is not on this gateway's allow-list")]
        return self.inner.decide(event, facts)


WitWorld = export(AllowList)
