import pytest

from pizzja_sdk import store


def test_text_and_bytes_go_in_and_come_out():
    store.set("memo", "héllo")
    assert store.get_text("memo") == "héllo"
    store.set("raw", b"\x01\x02\x03")
    assert store.get("raw") == b"\x01\x02\x03"
    store.delete("raw")
    assert store.get("raw") is None


def test_a_refused_value_raises_saying_why():
    with pytest.raises(store.StoreError, match="the limit is 65536"):
        store.set("big", bytes(70 * 1024))
    assert store.get("big") is None
