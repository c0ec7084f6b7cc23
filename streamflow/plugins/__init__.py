"""The plugin registry: extension points are filled by plugins, looked up by name.

A plugin is a :class:`StreamFlowPlugin` subclass published as an entry point of the group
``streamflow.plugin``::

    # pyproject.toml of a plugin distribution
    [project.entry-points."streamflow.plugin"]
    acme = "acme_streamflow:AcmePlugin"

    # acme_streamflow/__init__.py
    class AcmePlugin(StreamFlowPlugin):
        def register(self) -> None:
            self.register_connector("acme.cloud", AcmeConnector)

Then ``Registry.default().get("connector", "acme.cloud")`` returns ``AcmeConnector``, and
``type: acme.cloud`` works in ``streamflow.yml``. The built-in plugin loads first; a plugin that
registers an existing name overrides it with a :class:`PluginOverrideWarning`.
"""

from __future__ import annotations

from streamflow.plugins._builtin import BuiltinPlugin
from streamflow.plugins._registry import (
    ENTRY_POINT_GROUP,
    KINDS,
    Kind,
    PluginOverrideWarning,
    Registry,
    StreamFlowPlugin,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "KINDS",
    "BuiltinPlugin",
    "Kind",
    "PluginOverrideWarning",
    "Registry",
    "StreamFlowPlugin",
]
