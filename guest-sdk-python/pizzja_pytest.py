"""pytest setup for policies run by Python itself; a conftest.py imports
everything from here. It generates the WIT bindings (componentize-py's
``wit_world``) into ``.bindings/`` when they are missing or older than the
WIT, puts them on the path, and replaces the host's store with an
in-memory one (``pizzja_sdk.native``)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
WIT = next(p for p in (HERE / "pizzja_sdk" / "wit", HERE.parent / "wit") if p.is_dir())
BINDINGS = HERE / ".bindings"


def _bindings():
    stamp = BINDINGS / "wit_world" / "__init__.py"
    newest = max(p.stat().st_mtime for p in WIT.glob("*.wit"))
    if not stamp.exists() or stamp.stat().st_mtime < newest:
        tool = Path(sys.executable).parent / "componentize-py"
        subprocess.run(
            [str(tool) if tool.exists() else "componentize-py", "-d", str(WIT), "-w", "policy",
             "bindings", str(BINDINGS)],
            check=True,
        )
        os.utime(stamp)
    sys.path.insert(0, str(BINDINGS))
    sys.path.insert(0, str(HERE))


_bindings()

from pizzja_sdk import native  # noqa: E402: needs the bindings on the path

native.install()


@pytest.fixture(autouse=True)
def empty_store():
    """Each test starts with an empty store."""
    native.reset()
    yield
