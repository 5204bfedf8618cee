"""The account's store, kept by the host: it survives instance replacement,
traps and reloads, one store per local account. Keys are strings; values
bytes, or text encoded as UTF-8."""

from typing import Optional, Union

from componentize_py_types import Err
from wit_world.imports import store as _host


class StoreError(Exception):
    """The host refused a value (the store's bounds); the message says why."""


def get(key: str) -> Optional[bytes]:
    """The value under `key`, or None."""
    return _host.get(key)


def get_text(key: str) -> Optional[str]:
    """The value under `key` as text, or None."""
    value = _host.get(key)
    return None if value is None else bytes(value).decode()


def set(key: str, value: Union[bytes, str]) -> None:  # noqa: A001 (the WIT's name)
    """Stores `value` under `key`; raises StoreError saying why when the
    host refuses."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    try:
        _host.set(key, data)
    except Err as e:
        raise StoreError(str(e.value)) from None


def delete(key: str) -> None:
    """Removes `key`."""
    _host.delete(key)
