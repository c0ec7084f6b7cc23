"""Running from a ``streamflow.yml`` file: which workflow, where each step runs, retries.

``streamflow run streamflow.yml`` takes the file's (single) workflow and its settings (job)
file, binds each execute step to the deployment of its closest bound ancestor, turns the
``failureManager`` section into the retry policy, and offers each used deployment's
locations to the Scheduler. Deployments whose connector cannot run jobs from this process
yet are rejected with a clear error.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.failure_manager import RetrySettings
from actors.scheduler import LocationCapacity, local_capacity
from streamflow.errors import ConfigError, UnsupportedRequirementError
from streamflow.workflow.graph import ExecuteStep, WorkflowGraph

__all__ = ["CONTAINER_CHOICES", "ConfigRun", "apply_bindings", "is_streamflow_file", "load_config_run", "subject_safe"]

LOCAL = "__LOCAL__"
_RUNNABLE_HERE = {"local"}


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
        locations: deployment (subject-safe name) -> its locations.
        bindings: the loaded workflow configuration (for step bindings).
    """

    path: str
    workflow: str
    job: str | None
    retry: RetrySettings
    locations: dict[str, list[LocationCapacity]]
    bindings: Any


def load_config_run(path: str) -> ConfigRun:
    """Load a ``streamflow.yml`` for ``streamflow run``.

    Raises:
        ConfigError: the file is invalid, or holds more than one workflow.
        UnsupportedRequirementError: a bound deployment's connector cannot run here.
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
    locations: dict[str, list[LocationCapacity]] = {LOCAL: [local_capacity()]}
    for binding in workflow.bindings:
        for target in binding.targets:
            deployment = target.deployment
            if deployment.name == LOCAL:
                continue
            if deployment.type not in _RUNNABLE_HERE:
                raise UnsupportedRequirementError(
                    f"{path}: deployments.{deployment.name}: connector '{deployment.type}' cannot run jobs from "
                    f"this engine yet (available: {', '.join(sorted(_RUNNABLE_HERE))})")
            here = local_capacity()
            locations[subject_safe(deployment.name)] = [
                LocationCapacity(subject_safe(deployment.name), "localhost", here.cores, here.memory)]
    for position, entry in enumerate(workflow.docker):
        kind = (entry.get("deployment") or {}).get("type") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("step"), str) or kind not in CONTAINER_CHOICES:
            raise ConfigError(
                f"{path}: workflows.{workflow.name}.config.docker[{position}]: expected {{step: /path, deployment: "
                f"{{type: {' | '.join(CONTAINER_CHOICES)}}}}}, got {entry!r}")
    return ConfigRun(path=str(Path(path).resolve()), workflow=workflow.file, job=workflow.settings, retry=retry,
                     locations=locations, bindings=workflow)


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
            name = binding.targets[0].deployment.name if binding.targets else LOCAL
            step.target = LOCAL if name == LOCAL else subject_safe(name)
            step.container = _closest(translators, step.name)


def _closest(by_path: dict[str, str], step: str) -> str | None:
    path = step.rstrip("/") or "/"
    while True:
        if path in by_path:
            return by_path[path]
        if path == "/":
            return None
        path = posixpath.dirname(path)
