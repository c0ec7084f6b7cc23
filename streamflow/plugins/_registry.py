"""The plugin registry: extension points, plugins, and loading them from entry points."""

from __future__ import annotations

import importlib.metadata
import threading
import warnings
from abc import ABC, abstractmethod
from typing import Any, Literal, TypeAlias, overload

from streamflow.core.data import DataManager
from streamflow.core.deployment import BindingFilter, Connector, DeploymentManager
from streamflow.core.persistence import Database
from streamflow.core.recovery import CheckpointManager, FailureManager
from streamflow.core.scheduling import Policy, Scheduler
from streamflow.errors import PluginError

__all__ = ["ENTRY_POINT_GROUP", "KINDS", "Kind", "PluginOverrideWarning", "Registry", "StreamFlowPlugin"]

ENTRY_POINT_GROUP = "streamflow.plugin"
"""The entry-point group plugins are published under (``name = "module:PluginClass"``)."""

Kind: TypeAlias = Literal[
    "binding_filter",
    "checkpoint_manager",
    "connector",
    "data_manager",
    "database",
    "deployment_manager",
    "failure_manager",
    "policy",
    "scheduler",
]

KINDS: dict[str, type[Any]] = {
    "binding_filter": BindingFilter,
    "checkpoint_manager": CheckpointManager,
    "connector": Connector,
    "data_manager": DataManager,
    "database": Database,
    "deployment_manager": DeploymentManager,
    "failure_manager": FailureManager,
    "policy": Policy,
    "scheduler": Scheduler,
}
"""Extension point name → the interface its classes must implement."""


class PluginOverrideWarning(UserWarning):
    """A plugin registered a name that another plugin had already registered."""


def _class_path(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class StreamFlowPlugin(ABC):
    """Base class of plugins. Subclasses implement :meth:`register`, calling ``register_*``.

    Args:
        registry: the registry the plugin registers into.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    @abstractmethod
    def register(self) -> None:
        """Register the plugin's classes with the ``register_*`` methods."""

    def _add(self, kind: str, name: str, cls: type[Any]) -> None:
        self.registry.add(kind, name, cls, plugin=type(self).__name__)

    def register_binding_filter(self, name: str, cls: type[BindingFilter]) -> None:
        """Register a binding filter under ``name``."""
        self._add("binding_filter", name, cls)

    def register_checkpoint_manager(self, name: str, cls: type[CheckpointManager]) -> None:
        """Register a checkpoint manager under ``name``."""
        self._add("checkpoint_manager", name, cls)

    def register_connector(self, name: str, cls: type[Connector]) -> None:
        """Register a connector under ``name`` (the deployment ``type`` in ``streamflow.yml``)."""
        self._add("connector", name, cls)

    def register_data_manager(self, name: str, cls: type[DataManager]) -> None:
        """Register a data manager under ``name``."""
        self._add("data_manager", name, cls)

    def register_database(self, name: str, cls: type[Database]) -> None:
        """Register a database under ``name``."""
        self._add("database", name, cls)

    def register_deployment_manager(self, name: str, cls: type[DeploymentManager]) -> None:
        """Register a deployment manager under ``name``."""
        self._add("deployment_manager", name, cls)

    def register_failure_manager(self, name: str, cls: type[FailureManager]) -> None:
        """Register a failure manager under ``name``."""
        self._add("failure_manager", name, cls)

    def register_policy(self, name: str, cls: type[Policy]) -> None:
        """Register a scheduling policy under ``name``."""
        self._add("policy", name, cls)

    def register_scheduler(self, name: str, cls: type[Scheduler]) -> None:
        """Register a scheduler under ``name``."""
        self._add("scheduler", name, cls)


class Registry:
    """Extension point → name → class.

    A fresh registry is empty; :meth:`load` fills it from the installed plugins (the built-in
    one first, then the others in entry-point name order). :meth:`default` returns a shared,
    loaded registry.
    """

    _default: Registry | None = None
    _default_lock = threading.Lock()

    def __init__(self) -> None:
        self._classes: dict[str, dict[str, type[Any]]] = {kind: {} for kind in KINDS}
        self._owners: dict[tuple[str, str], str] = {}
        self._plugins: dict[str, str] = {}

    @classmethod
    def default(cls) -> Registry:
        """Return the process-wide registry, loading the installed plugins on first use."""
        with cls._default_lock:
            if cls._default is None:
                registry = cls()
                registry.load()
                cls._default = registry
            return cls._default

    def add(self, kind: str, name: str, cls: type[Any], plugin: str = "") -> None:
        """Register ``cls`` as ``name`` for the extension point ``kind``.

        Registering a name again replaces the class, with a :class:`PluginOverrideWarning` when
        another plugin had registered it.

        Raises:
            PluginError: if ``kind`` is unknown or ``cls`` does not implement its interface.
        """
        if kind not in KINDS:
            raise PluginError(f"unknown extension point {kind!r}; expected one of {sorted(KINDS)}")
        base = KINDS[kind]
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise PluginError(f"{kind} {name!r}: {cls!r} is not a subclass of {_class_path(base)}")
        previous = self._classes[kind].get(name)
        if previous is not None and previous is not cls:
            owner = self._owners.get((kind, name), "?")
            warnings.warn(
                f"plugin {plugin or '?'} overrides {kind} {name!r} registered by {owner} "
                f"({_class_path(previous)} -> {_class_path(cls)})",
                PluginOverrideWarning,
                stacklevel=3,
            )
        self._classes[kind][name] = cls
        self._owners[(kind, name)] = plugin

    def register_plugin(self, plugin_class: Any, name: str | None = None) -> None:
        """Instantiate ``plugin_class`` with this registry and run its ``register()``.

        Raises:
            PluginError: if ``plugin_class`` is not a :class:`StreamFlowPlugin` subclass.
        """
        if not (isinstance(plugin_class, type) and issubclass(plugin_class, StreamFlowPlugin)):
            raise PluginError(
                f"plugin {name or plugin_class!r}: {plugin_class!r} is not a StreamFlowPlugin subclass"
            )
        plugin = plugin_class(self)
        plugin.register()
        self._plugins[name or plugin_class.__name__] = _class_path(plugin_class)

    def load(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every plugin published under the entry-point ``group``.

        The built-in plugin (entry point ``builtin``) is loaded first, so that others may
        override its names (with a warning).

        Raises:
            PluginError: if an entry point cannot be imported or is not a plugin class.
        """
        entry_points = sorted(
            importlib.metadata.entry_points(group=group), key=lambda ep: (ep.name != "builtin", ep.name)
        )
        seen: set[str] = set()
        for entry_point in entry_points:
            if entry_point.name in seen:  # the same distribution seen twice on sys.path
                continue
            seen.add(entry_point.name)
            try:
                plugin_class = entry_point.load()
            except Exception as exc:  # plugin import boundary: any failure is a plugin error
                raise PluginError(
                    f"cannot load plugin {entry_point.name!r} ({entry_point.value}): {exc}"
                ) from exc
            self.register_plugin(plugin_class, name=entry_point.name)

    @overload
    def get(self, kind: Literal["binding_filter"], name: str) -> type[BindingFilter]: ...
    @overload
    def get(self, kind: Literal["checkpoint_manager"], name: str) -> type[CheckpointManager]: ...
    @overload
    def get(self, kind: Literal["connector"], name: str) -> type[Connector]: ...
    @overload
    def get(self, kind: Literal["data_manager"], name: str) -> type[DataManager]: ...
    @overload
    def get(self, kind: Literal["database"], name: str) -> type[Database]: ...
    @overload
    def get(self, kind: Literal["deployment_manager"], name: str) -> type[DeploymentManager]: ...
    @overload
    def get(self, kind: Literal["failure_manager"], name: str) -> type[FailureManager]: ...
    @overload
    def get(self, kind: Literal["policy"], name: str) -> type[Policy]: ...
    @overload
    def get(self, kind: Literal["scheduler"], name: str) -> type[Scheduler]: ...
    @overload
    def get(self, kind: str, name: str) -> type[Any]: ...
    def get(self, kind: str, name: str) -> type[Any]:
        """Return the class registered as ``name`` for the extension point ``kind``.

        Raises:
            PluginError: if the extension point or the name is unknown (the message lists the
                known names).
        """
        if kind not in self._classes:
            raise PluginError(f"unknown extension point {kind!r}; expected one of {sorted(KINDS)}")
        try:
            return self._classes[kind][name]
        except KeyError:
            known = ", ".join(sorted(self._classes[kind])) or "none"
            raise PluginError(f"no {kind} named {name!r} is registered (known: {known})") from None

    def names(self, kind: str) -> list[str]:
        """Return the names registered for ``kind``, sorted."""
        return sorted(self._classes.get(kind, {}))

    def list(self) -> list[tuple[str, str, str]]:
        """Return ``(kind, name, class path)`` for every registration, sorted."""
        return sorted(
            (kind, name, _class_path(cls))
            for kind, classes in self._classes.items()
            for name, cls in classes.items()
        )

    def plugins(self) -> dict[str, str]:
        """Return the loaded plugins: entry-point (or class) name → plugin class path."""
        return dict(self._plugins)
