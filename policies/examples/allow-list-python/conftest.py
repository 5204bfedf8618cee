"""The SDK's pytest setup (bindings, in-memory store), for this example."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2].parent / "guest-sdk-python"))

from pizzja_pytest import *  # noqa: E402,F401,F403
