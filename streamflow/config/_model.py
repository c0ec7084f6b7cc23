"""Typed view of a loaded ``streamflow.yml``."""

from __future__ import annotations

import posixpath
from typing import Any

import msgspec

from streamflow.core.deployment import BindingConfig, DeploymentConfig, FilterConfig, LocalTarget, Target

__all__ = ["PluginConfig", "PortBinding", "StepBinding", "StreamFlowConfig", "WorkflowConfig", "find_binding"]


class PluginConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A section choosing an implementation by registered name, with its keyword arguments."""

    type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class StepBinding(msgspec.Struct, frozen=True, kw_only=True):
    """A ``bindings`` entry binding the step (sub)tree ``step`` to targets."""

    step: str
    targets: list[Target]
    filters: list[FilterConfig] = msgspec.field(default_factory=list)


class PortBinding(msgspec.Struct, frozen=True, kw_only=True):
    """A ``bindings`` entry saying that the data of ``port`` lives on ``target`` (at its workdir)."""

    port: str
    target: Target


def _normalize(step: str) -> str:
    path = posixpath.normpath("/" + step.lstrip("/"))
    return "/" if path in ("/", "//") else path


def find_binding(bindings: list[StepBinding], step: str) -> BindingConfig:
    """Return the binding of ``step``: the one of its closest bound ancestor (itself included).

    Step paths are POSIX-like: ``/`` is the root workflow, ``/main/step`` a step of the
    sub-workflow ``main``. An unbound step runs on the local deployment ``__LOCAL__``.

    Args:
        bindings: the step bindings of a workflow.
        step: the step path.

    Returns:
        The binding configuration (targets and filters).
    """
    by_path = {_normalize(binding.step): binding for binding in bindings}
    path = _normalize(step)
    while True:
        if (binding := by_path.get(path)) is not None:
            return BindingConfig(targets=list(binding.targets), filters=list(binding.filters))
        if path == "/":
            return BindingConfig(targets=[LocalTarget()])
        path = posixpath.dirname(path)


class WorkflowConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A ``workflows`` entry.

    Attributes:
        name: the workflow name.
        type: the workflow language (``cwl``).
        file: absolute path of the process file.
        settings: absolute path of the job (inputs) file, if any.
        docker: the ``config.docker`` entries (container translators per step), as written.
        bindings: step bindings, in file order.
        port_bindings: port bindings, in file order.
    """

    name: str
    type: str
    file: str
    settings: str | None = None
    docker: list[dict[str, Any]] = msgspec.field(default_factory=list)
    bindings: list[StepBinding] = msgspec.field(default_factory=list)
    port_bindings: list[PortBinding] = msgspec.field(default_factory=list)

    def get_binding(self, step: str) -> BindingConfig:
        """Return the binding of ``step`` (see :func:`find_binding`)."""
        return find_binding(self.bindings, step)

    def get_port_target(self, port: str) -> Target | None:
        """Return the target of the port binding of ``port``, if any."""
        path = _normalize(port)
        for binding in self.port_bindings:
            if _normalize(binding.port) == path:
                return binding.target
        return None


class StreamFlowConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A validated ``streamflow.yml``.

    Attributes:
        path: absolute path of the file.
        config_dir: its directory (relative paths in the file are resolved against it).
        version: the format version (``v1.0``).
        workflows: by name.
        deployments: by name, with ``wraps`` normalised and ``workdir`` inherited along it.
        binding_filters: by name.
        scheduler: the scheduler section (``default`` if absent).
        policies: scheduling policies by name.
        database: the database section (``default`` if absent).
        data_manager: the data manager section (``default`` if absent).
        deployment_manager: the deployment manager section (``default`` if absent).
        checkpoint_manager: the checkpoint manager (explicit ``type``; else ``default`` if
            ``enabled``; else ``dummy``).
        failure_manager: the failure manager (same rule as the checkpoint manager).
        raw: the file content as plain data.
    """

    path: str
    config_dir: str
    version: str
    workflows: dict[str, WorkflowConfig]
    deployments: dict[str, DeploymentConfig]
    binding_filters: dict[str, FilterConfig]
    scheduler: PluginConfig
    policies: dict[str, PluginConfig]
    database: PluginConfig
    data_manager: PluginConfig
    deployment_manager: PluginConfig
    checkpoint_manager: PluginConfig
    failure_manager: PluginConfig
    raw: dict[str, Any] = msgspec.field(default_factory=dict)

    def context_config(self) -> dict[str, Any]:
        """Return the configuration mapping :class:`~streamflow.core.context.StreamFlowContext` expects."""

        def section(plugin: PluginConfig) -> dict[str, Any]:
            return {"type": plugin.type, "config": dict(plugin.config)}

        return {
            **self.raw,
            "path": self.path,
            "config_dir": self.config_dir,
            "database": section(self.database),
            "dataManager": section(self.data_manager),
            "deploymentManager": section(self.deployment_manager),
            "checkpointManager": section(self.checkpoint_manager),
            "failureManager": section(self.failure_manager),
            "scheduling": {
                "scheduler": section(self.scheduler),
                "policies": {name: section(p) for name, p in self.policies.items()},
            },
        }
