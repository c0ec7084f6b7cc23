"""Tests of the plugin registry and the built-in plugin."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from streamflow.connectors.local import LocalConnector
from streamflow.errors import PluginError
from streamflow.plugins import BuiltinPlugin, PluginOverrideWarning, Registry, StreamFlowPlugin
from streamflow.scheduling.policy import DataLocalityPolicy


def _install_fake_distribution(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str, module: str
) -> None:
    """Put a real (unpacked) distribution with entry points on sys.path."""
    dist = tmp_path / "sf_fake_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: sf-fake-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    (tmp_path / "sf_fake_plugin.py").write_text(textwrap.dedent(module))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "sf_fake_plugin", raising=False)


def test_load_registers_builtins() -> None:
    """Loading the installed plugins registers the built-in names."""
    registry = Registry()
    registry.load()
    assert registry.get("connector", "local") is LocalConnector
    assert registry.get("policy", "data_locality") is DataLocalityPolicy
    assert registry.get("failure_manager", "default") is registry.get("failure_manager", "retry")
    assert {"default", "dummy", "retry"} <= set(registry.names("failure_manager"))
    assert {"default", "dummy"} <= set(registry.names("checkpoint_manager"))
    assert registry.names("deployment_manager") == ["default"]
    assert registry.plugins()["builtin"] == "streamflow.plugins._builtin.BuiltinPlugin"


def test_list_gives_kind_name_and_class_path() -> None:
    """list() returns sorted (kind, name, class path) triples."""
    registry = Registry()
    registry.register_plugin(BuiltinPlugin)
    entries = registry.list()
    assert entries == sorted(entries)
    assert ("connector", "local", "streamflow.connectors.local.LocalConnector") in entries


def test_get_unknown_name_or_kind_is_plugin_error() -> None:
    """Unknown names and extension points raise PluginError listing what is known."""
    registry = Registry()
    registry.register_plugin(BuiltinPlugin)
    with pytest.raises(PluginError, match=r"no connector named 'kube' is registered \(known: apptainer, docker, .*, local, pbs, singularity, slurm, ssh\)"):
        registry.get("connector", "kube")
    with pytest.raises(PluginError, match="unknown extension point"):
        registry.get("gadget", "x")


def test_override_warns() -> None:
    """A plugin registering an existing name overrides it with a PluginOverrideWarning."""

    class Faster(LocalConnector):
        """A local connector variant."""

    class Override(StreamFlowPlugin):
        """Overrides the local connector."""

        def register(self) -> None:
            self.register_connector("local", Faster)

    registry = Registry()
    registry.register_plugin(BuiltinPlugin)
    with pytest.warns(PluginOverrideWarning, match="overrides connector 'local' registered by BuiltinPlugin"):
        registry.register_plugin(Override)
    assert registry.get("connector", "local") is Faster


def test_register_rejects_wrong_interface() -> None:
    """Registering a class that does not implement the extension point raises PluginError."""

    class Bad(StreamFlowPlugin):
        """Registers a policy as a connector."""

        def register(self) -> None:
            self.register_connector("oops", DataLocalityPolicy)  # type: ignore[arg-type]

    with pytest.raises(PluginError, match=r"not a subclass of streamflow\.core\.deployment\.Connector"):
        Registry().register_plugin(Bad)


def test_entry_point_plugins_load_after_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Third-party entry points load after the built-in plugin and can add names."""
    _install_fake_distribution(
        tmp_path,
        monkeypatch,
        """\
        [streamflow.plugin]
        acme = sf_fake_plugin:AcmePlugin
        """,
        """\
        from streamflow.plugins import StreamFlowPlugin
        from streamflow.scheduling.policy import DataLocalityPolicy

        class AcmePolicy(DataLocalityPolicy):
            pass

        class AcmePlugin(StreamFlowPlugin):
            def register(self):
                self.register_policy("acme.near", AcmePolicy)
        """,
    )
    registry = Registry()
    registry.load()
    assert registry.get("policy", "acme.near").__name__ == "AcmePolicy"
    assert list(registry.plugins())[:2] == ["builtin", "acme"]


def test_non_plugin_entry_point_is_plugin_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point that is not a StreamFlowPlugin subclass raises PluginError."""
    _install_fake_distribution(
        tmp_path,
        monkeypatch,
        """\
        [streamflow.plugin]
        broken = sf_fake_plugin:NotAPlugin
        """,
        """\
        class NotAPlugin:
            pass
        """,
    )
    with pytest.raises(PluginError, match=r"broken.*not a StreamFlowPlugin subclass"):
        Registry().load()


def test_unimportable_entry_point_is_plugin_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An entry point whose module fails to import raises PluginError chained to the cause."""
    _install_fake_distribution(
        tmp_path,
        monkeypatch,
        """\
        [streamflow.plugin]
        crashy = sf_fake_plugin:Plugin
        """,
        "raise RuntimeError('import failed')\n",
    )
    with pytest.raises(PluginError, match="cannot load plugin 'crashy'") as info:
        Registry().load()
    assert isinstance(info.value.__cause__, RuntimeError)


def test_default_registry_is_shared_and_loaded() -> None:
    """Registry.default() returns one loaded registry."""
    assert Registry.default() is Registry.default()
    assert Registry.default().get("connector", "local") is LocalConnector
