"""The Python default policy as a component (guest-sdk-python/build.sh)."""
from pizzja_sdk.app import export
from pizzja_sdk.default import DefaultPolicy

WitWorld = export(DefaultPolicy)
