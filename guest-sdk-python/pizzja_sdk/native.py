"""For tests run by Python itself (pytest), outside the gateway: the host's
store in memory, with the host's bounds. ``install()`` puts it in place of
the component's import; ``reset()`` empties it."""

from componentize_py_types import Err
from wit_world.imports import store as _host

#: What one account's store may hold, keys and values (the host's bound).
LIMIT = 64 * 1024
#: The longest key.
KEY_LIMIT = 256

_values: dict = {}


def _get(key):
    return _values.get(key)


def _set(key, value):
    key_len = len(key.encode())
    if key_len > KEY_LIMIT:
        raise Err(f"keys are at most {KEY_LIMIT} bytes")
    old = key_len + len(_values[key]) if key in _values else 0
    usage = sum(len(k.encode()) + len(v) for k, v in _values.items())
    after = usage - old + key_len + len(value)
    if after > LIMIT:
        raise Err(f"the account's store would hold {after} bytes; the limit is {LIMIT}")
    _values[key] = bytes(value)


def _delete(key):
    _values.pop(key, None)


def install():
    """Replaces the component's store import with the in-memory one."""
    _host.get, _host.set, _host.delete = _get, _set, _delete


def reset():
    """Empties the in-memory store."""
    _values.clear()
