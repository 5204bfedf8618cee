from pizzja_sdk import JidParts, split_resource


def test_parses_full_bare_and_domain_jids():
    j = JidParts.parse("alice@example.org/Work/phone")
    assert (j.node, j.domain, j.resource) == ("alice", "example.org", "Work/phone")
    assert j.bare() == "alice@example.org"
    assert j.full() == "alice@example.org/Work/phone"
    d = JidParts.parse("remote.net")
    assert (d.node, d.domain, d.resource) == (None, "remote.net", None)
    assert d.full() == "remote.net"


def test_refuses_what_cannot_be_a_jid():
    for bad in ["", "@x", "a@", "a@b@c", "x/", "/r", "a@/r", None]:
        assert JidParts.parse(bad) is None, bad


def test_a_local_resource_splits_at_its_first_slash():
    assert split_resource("Work/phone/2") == ("Work", "phone/2")
    assert split_resource("Work") == ("Work", "")
