"""The SDK's own tests: bindings, in-memory store (see pizzja_pytest.py)."""
from pizzja_pytest import *  # noqa: F401,F403
