"""Running from a ``streamflow.yml`` file: which workflow, where each step runs, retries.

``streamflow run streamflow.yml`` takes the file's (single) workflow and its settings (job)
file, binds each execute step to the deployment of its closest bound ancestor, turns the
``failureManager`` section into the retry policy, and hands the deployments the run may use
(with what they ``wraps``) to the run's deployment manager: their connectors are deployed
when a job bound to them is requested (or at start when ``lazy: false``), and their
locations offered to the Scheduler from then on.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from actors.failure_manager import RetrySettings
from actors.scheduler import LocationCapacity, local_capacity
from streamflow.core.deployment import DeploymentConfig, LocalTarget, WrapsConfig
from streamflow.deployment.manager import wraps_chain
from streamflow.errors import ConfigError
from streamflow.workflow.graph import ExecuteStep, WorkflowGraph

__all__ = ["CONTAINER_CHOICES", "ConfigRun", "apply_bindings", "is_streamflow_file", "load_config_run", "subject_safe"]

LOCAL = "__LOCAL__"


def subject_safe(name: str) -> str:
    """A deployment name usable as a NATS subject token."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name) or "_"


def is_streamflow_file(path: str) -> bool:
    """Whether ``path`` looks like a ``streamflow.yml`` (rather than a CWL document)."""
    if not path.endswith((".yml", ".yaml")) or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as handle:
        head = handle.read(4096)
    return bool(re.search(r"^workflows\s*:", head, re.M)) and "cwlVersion" not in head


@dataclass
class ConfigRun:
    """What a ``streamflow.yml`` says about a run.

    Attributes:
        path: the file.
        workflow: the CWL document.
        job: the job (settings) file, if any.
        retry: the retry policy from ``failureManager``.
        locations: deployment -> locations known without deploying it (``__LOCAL__``).
        bindings: the loaded workflow configuration (for step bindings).
        deployments: the deployments the run may use (bound ones and what they wrap), by
            subject-safe name, their ``wraps`` renamed the same way.
        config_dir: the directory of the file (connectors resolve relative paths against it).
        policy: the scheduling policy's registered name and config.
    """

    path: str
    workflow: str
    job: str | None
    retry: RetrySettings
    locations: dict[str, list[LocationCapacity]]
    bindings: Any
    deployments: dict[str, DeploymentConfig] = field(default_factory=dict)
    config_dir: str = "."
    policy: tuple[str, dict[str, Any]] = ("data_locality", {})
    filters: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)


def load_config_run(path: str) -> ConfigRun:
    """Load a ``streamflow.yml`` for ``streamflow run``.

    Raises:
        ConfigError: the file is invalid, holds more than one workflow, or two deployment
            names map to the same subject-safe name.
    """
    from streamflow.config import load_config

    config = load_config(path)
    if len(config.workflows) != 1:
        raise ConfigError(f"{path}: workflows: expected exactly one workflow to run, found {len(config.workflows)}")
    workflow = next(iter(config.workflows.values()))
    failure = config.failure_manager
    settings = dict(failure.config or {})
    retry = RetrySettings(
        max_retries=int(settings.get("max_retries", 0) or 0) if failure.type != "dummy" else 0,
        retry_delay=float(settings.get("retry_delay", 0) or 0),
        backoff=float(settings.get("backoff", 2.0)),
        max_delay=float(settings.get("max_delay", 300.0)),
    )
    safe: dict[str, str] = {}
    for name in config.deployments:
        other = next((n for n, s_ in safe.items() if s_ == subject_safe(name)), None)
        if other is not None:
            raise ConfigError(f"{path}: deployments: {other!r} and {name!r} are the same name once made "
                              f"subject-safe ({subject_safe(name)!r}); rename one")
        safe[name] = subject_safe(name)
    used: set[str] = set()
    for binding in workflow.bindings:
        for target in binding.targets:
            if target.deployment.name != LOCAL:
                used.update(wraps_chain(target.deployment.name, config.deployments))
    for name, deployment in config.deployments.items():
        if not deployment.lazy:
            used.update(wraps_chain(name, config.deployments))
    deployments = {safe[name]: _renamed(config.deployments[name], safe) for name in sorted(used)}
    policy_name = "data_locality"
    policy_config: dict[str, Any] = {}
    if config.policies:
        chosen = next(iter(config.policies.values()))
        policy_name, policy_config = chosen.type, dict(chosen.config)
    for position, entry in enumerate(workflow.docker):
        kind = (entry.get("deployment") or {}).get("type") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), str) or kind not in CONTAINER_CHOICES:
            raise ConfigError(
                f"{path}: workflows.{workflow.name}.config.docker[{position}]: expected {{step: /path, deployment: "
                f"{{type: {' | '.join(CONTAINER_CHOICES)}}}}}, got {entry!r}")
    return ConfigRun(path=str(Path(path).resolve()), workflow=workflow.file, job=workflow.settings, retry=retry,
                     locations={LOCAL: [local_capacity()]}, bindings=workflow, deployments=deployments,
                     config_dir=config.config_dir, policy=(policy_name, policy_config),
                     filters={name: (f.type, dict(f.config)) for name, f in config.binding_filters.items()})


def _renamed(deployment: DeploymentConfig, safe: dict[str, str]) -> DeploymentConfig:
    wraps = deployment.wraps
    if wraps is not None:
        wraps = WrapsConfig(deployment=safe.get(wraps.deployment, wraps.deployment), service=wraps.service)
    return msgspec.structs.replace(deployment, name=safe.get(deployment.name, deployment.name), wraps=wraps)


#: The container translators a ``docker`` entry may choose for its steps: ``none`` runs
#: DockerRequirement tools on the host; ``docker``/``podman`` in that engine; ``auto``
#: whichever answers (the default, also ``STREAMFLOW_CONTAINER_ENGINE``).
CONTAINER_CHOICES = ("none", "auto", "docker", "podman")


def apply_bindings(graph: WorkflowGraph, run: ConfigRun) -> None:
    """Bind every execute step to the deployment of its closest bound ancestor, and to the
    container translator of its closest ancestor with a ``docker`` entry."""
    translators = {entry["step"].rstrip("/") or "/": entry["deployment"]["type"] for entry in run.bindings.docker}
    for step in graph.steps.values():
        if isinstance(step, ExecuteStep):
            binding = run.bindings.get_binding(step.name)
            targets = binding.targets or [LocalTarget()]
            names = [LOCAL if t.deployment.name == LOCAL else subject_safe(t.deployment.name) for t in targets]
            step.target = names[0]
            step.targets = list(dict.fromkeys(names))
            step.service = targets[0].service
            step.locations = max(1, targets[0].locations)
            step.filters = [f.name for f in binding.filters]
            if step.container != "none":  # --no-container (recorded with the run) wins
                step.container = _closest(translators, step.name)


def _closest(by_path: dict[str, str], step: str) -> str | None:
    path = step.rstrip("/") or "/"
    while True:
        if path in by_path:
            return by_path[path]
        if path == "/":
            return None
        path = posixpath.dirname(path)
