"""The Python default policy, natively: a few cases of each section. Its
full check is the Rust default's scenario files, run through `pizzja
policy test` on the built component (host/tests/languages.rs)."""

import pytest
from wit_world.imports import types as t

from pizzja_sdk.default import DefaultPolicy


def facts(controllers=(), sessions=()):
    return t.Facts(
        local_jid="alice@local.test",
        foreign_jid="alice@foreign.test",
        gateway="gw.local.test",
        controllers=[t.Controller(r, None, None, 0, 0, 0) for r in controllers],
        sessions=[t.Session(r, state) for r, state in sessions],
        now_ms=0,
    )


def local(kind, type_, to, sender):
    stanza = t.Stanza(kind, type_, "i1", f"alice@local.test/{sender}", to, "<x/>")
    return t.Event_Local(t.LocalStanza(stanza, sender, None))


def test_the_first_controller_of_a_opens_f_a():
    actions = DefaultPolicy({}).decide(
        local(t.StanzaKind.PRESENCE, "", "gw.local.test", "Work/phone"), facts(["Work/phone"]))
    assert actions == [t.Action_OpenSession("Work")]


def test_a_message_to_x_at_t_leaves_through_f_a_to_unesc_x():
    actions = DefaultPolicy({}).decide(
        local(t.StanzaKind.MESSAGE, "chat", r"bob\40foreign.test@gw.local.test/desk", "Work/phone"),
        facts(["Work/phone"], [("Work", t.SessionState.ONLINE)]))
    assert actions == [t.Action_SendForeign(
        t.SendForeign("Work", "bob@foreign.test/desk", t.Content_Original(), []))]


def test_what_f_a_receives_goes_to_every_controller_of_a():
    stanza = t.Stanza(t.StanzaKind.MESSAGE, "chat", None, "bob@foreign.test/desk",
                      "alice@foreign.test/Work", "<x/>")
    event = t.Event_Foreign(t.ForeignStanza("Work", stanza, None))
    actions = DefaultPolicy({}).decide(
        event, facts(["Work/phone", "Home/pc", "Work/laptop"], [("Work", t.SessionState.ONLINE)]))
    assert [(a.value.to_resource, a.value.from_node, a.value.from_resource) for a in actions] == [
        ("Work/phone", r"bob\40foreign.test", "desk"),
        ("Work/laptop", r"bob\40foreign.test", "desk"),
    ]


def test_an_unknown_initial_presence_is_refused():
    with pytest.raises(ValueError, match="initial_presence must be"):
        DefaultPolicy({"initial_presence": "sometimes"})
