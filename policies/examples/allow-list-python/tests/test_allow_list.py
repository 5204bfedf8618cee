from wit_world.imports import types as t

from app import AllowList
from pizzja_sdk import JidParts

FACTS = t.Facts("alice@example.org", "me@remote.net", "gw.example.org", [], [], 0)


def policy():
    return AllowList({"allow": "bob@remote.net, support.example",
                      "allow:alice@example.org": "carol@remote.net"})


def test_listed_contacts_domains_and_the_own_account_get_through():
    p = policy()
    for jid in ["bob@remote.net/pc", "anyone@support.example", "carol@remote.net",
                "me@remote.net/Home", "remote.net"]:
        assert p.allowed(FACTS, JidParts.parse(jid)), jid
    assert not p.allowed(FACTS, JidParts.parse("mallory@remote.net"))


def test_stanzas_from_unlisted_contacts_are_dropped():
    stanza = t.Stanza(t.StanzaKind.MESSAGE, "chat", None, "mallory@remote.net/x", None, "")
    actions = policy().decide(t.Event_Foreign(t.ForeignStanza("Work", stanza, None)), FACTS)
    assert all(isinstance(a, t.Action_Log) for a in actions)


def test_stanzas_to_unlisted_contacts_are_refused():
    stanza = t.Stanza(t.StanzaKind.MESSAGE, "chat", None, "alice@example.org/Work/phone",
                      r"mallory\40remote.net@gw.example.org", "")
    actions = policy().decide(t.Event_Local(t.LocalStanza(stanza, "Work/phone", None)), FACTS)
    assert len(actions) == 1 and actions[0].value.condition == "not-allowed"
