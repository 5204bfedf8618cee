"""Makes a policy class a component's exports: ``export(Policy)`` returns
the ``WitWorld`` class componentize-py wants, which builds one `Policy`
from the configuration in ``init`` and calls its ``decide``. An exception
in ``Policy(config)`` refuses the configuration with its message."""

from componentize_py_types import Err

import wit_world


def export(policy_class):
    """The ``WitWorld`` class for a policy class taking a config dict."""

    class WitWorld(wit_world.WitWorld):
        policy = None

        def init(self, config):
            try:
                WitWorld.policy = policy_class(dict(config))
            except Exception as e:  # noqa: BLE001: every refusal is reported
                raise Err(str(e)) from None

        def decide(self, event, facts):
            return WitWorld.policy.decide(event, facts)

    return WitWorld
