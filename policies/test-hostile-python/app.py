"""A hostile policy in Python, for the host's sandbox tests: the default
policy, except that a local message whose body is one of the words below
makes it misbehave (as policies/test-hostile does in Rust).

- ``trap``: raises an exception nobody catches.
- ``loop``: never returns.
- ``grow``: allocates far more memory than any cap allows.
- ``forge``: returns actions that try to break the host's invariants.
- ``clock``: logs what the clocks say.
- ``sleep``: sleeps for a millisecond (a policy cannot wait).
- ``print``: writes to stdout and stderr, then decides as usual.
- ``print-and-trap``: writes to stderr, then raises.
- ``net``: tries to open a TCP connection and logs what it met.
- ``remember <text>`` / ``recall`` / ``fill``: the account's store.
- ``nothing``: decides nothing.

With ``always = "<word>"`` in its configuration every event carries that word.
"""

import json
import socket
import sys
import time

from wit_world.imports import types as t

from pizzja_sdk import debug, send_local_from_gateway, send_local_xml, store, xml
from pizzja_sdk.app import export
from pizzja_sdk.default import DefaultPolicy


class Hostile:
    def __init__(self, config):
        self.inner = DefaultPolicy(config)
        self.always = config.get("always")

    def word(self, event):
        if self.always is not None:
            return self.always
        if isinstance(event, t.Event_Local):
            return xml.body_of(event.value.stanza.xml)
        return None

    def decide(self, event, facts):
        word = self.word(event)
        if word == "trap":
            raise RuntimeError("hostile policy raises on purpose")
        if word == "loop":
            while True:
                pass
        if word == "grow":
            kept = []
            while True:
                kept.append(bytearray(1 << 20))
        if word == "forge":
            sender = event.value.sender_resource if isinstance(event, t.Event_Local) else None
            return [
                # Another account as the target, and a sender outside T.
                send_local_xml("x/../../carol@local.test", "evil@elsewhere.example", None,
                               xml.chat("to another account")),
                # Addresses written into the XML itself.
                send_local_from_gateway(
                    sender,
                    "<message type='chat' to='carol@local.test' from='admin@local.test'>"
                    "<body>forged</body></message>"),
                # A session that is not this account's.
                t.Action_SendForeign(t.SendForeign(
                    "NotMine", "bob@foreign.test", t.Content_Original(), [])),
            ]
        if word == "clock":
            return [debug(f"clock: {time.time()} {time.monotonic()}")]
        if word == "sleep":
            time.sleep(0.001)
            return [debug("slept")]
        if word == "print":
            print("to stdout")
            print("to stderr", file=sys.stderr)
            return self.inner.decide(event, facts)
        if word == "print-and-trap":
            print("to stderr", file=sys.stderr)
            raise RuntimeError("hostile: thrown on purpose")
        if word == "net":
            # Not create_connection: its name lookup needs the idna codec,
            # which componentize-py leaves out of the bundled library.
            try:
                with socket.socket() as s:
                    s.connect(("127.0.0.1", 5222))
                return [debug("net: connected")]
            except OSError as e:
                return [debug(f"net: refused: {e}")]
        if word == "recall":
            return [debug(f"memo: {json.dumps(store.get_text('memo'))}")]
        if word == "fill":
            try:
                store.set("big", bytes(70 * 1024))
                return [debug("stored")]
            except store.StoreError as e:
                return [debug(f"refused: {e}")]
        if word == "nothing":
            return []
        if word is not None and word.startswith("remember "):
            try:
                store.set("memo", word[len("remember "):])
                return [debug("stored")]
            except store.StoreError as e:
                return [debug(f"refused: {e}")]
        return self.inner.decide(event, facts)


WitWorld = export(Hostile)
