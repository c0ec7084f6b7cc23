"""What a run records of its settings, so that ``resume``, ``host`` and agents use the run as
it was submitted, not the files as they are now.

``RunSubmitted`` carries the retry policy (every run) and, for a ``streamflow.yml`` run,
the file's path and sha256, each execute step's binding (targets, service, locations,
container translator), the scheduling policy and every deployment's settings *without
its secrets*: a key naming a password, passphrase, secret, token or credential is left
out and listed instead. A resume takes its secrets from the file again (by deployment
and key); when the file is gone, or no longer has one of them, the resume is refused
with a ConfigError naming the deployment and the field. A changed file changes nothing
else: the recorded settings win (and a warning says so).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import structlog

from actors.failure_manager import RetrySettings
from events.schema import RetryPolicy, RunSubmitted, StepBinding
from streamflow.cli.config_run import LOCAL, ConfigRun, load_config_run
from streamflow.core.deployment import DeploymentConfig
from streamflow.errors import ConfigError
from streamflow.workflow.graph import ExecuteStep, WorkflowGraph

__all__ = [
    "apply_recorded_bindings",
    "config_for_resume",
    "record_config",
    "redact",
    "retry_policy",
    "retry_settings",
]

log = structlog.get_logger("streamflow.engine")

_SECRET = re.compile(r"pass(word|phrase)|secret|token|credential", re.IGNORECASE)
SECRETS_KEY = "__secrets__"


def retry_policy(retry: RetrySettings) -> RetryPolicy:
    """The retry policy as recorded."""
    return RetryPolicy(max_retries=retry.max_retries, retry_delay=retry.retry_delay, backoff=retry.backoff,
                       max_delay=retry.max_delay)


def retry_settings(submitted: RunSubmitted, config_run: ConfigRun | None = None) -> RetrySettings:
    """The retry policy a run was submitted with (older runs: the file's, or none)."""
    if submitted.retry is not None:
        r = submitted.retry
        return RetrySettings(max_retries=r.max_retries, retry_delay=r.retry_delay, backoff=r.backoff,
                             max_delay=r.max_delay)
    return config_run.retry if config_run is not None else RetrySettings()


def redact(value: Any, path: str = "") -> tuple[Any, list[str]]:
    """``value`` without the entries whose key names a secret, and the dotted paths left out."""
    if isinstance(value, dict):
        kept: dict[str, Any] = {}
        removed: list[str] = []
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and _SECRET.search(key) and not isinstance(item, dict | list):
                removed.append(where)
                continue
            kept[key], inner = redact(item, where)
            removed.extend(inner)
        return kept, removed
    if isinstance(value, list):
        items, removed = [], []
        for index, item in enumerate(value):
            clean, inner = redact(item, f"{path}[{index}]")
            items.append(clean)
            removed.extend(inner)
        return items, removed
    return value, []


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def record_config(config_run: ConfigRun, graph: WorkflowGraph) -> dict[str, Any]:
    """The ``RunSubmitted`` fields recording a ``streamflow.yml`` run (bindings already applied
    to ``graph``)."""
    deployments: dict[str, dict[str, Any]] = {}
    for name, deployment in config_run.deployments.items():
        plain, removed = redact(msgspec.to_builtins(deployment))
        if removed:
            plain[SECRETS_KEY] = removed
        deployments[name] = plain
    bindings = {step.id: StepBinding(targets=list(step.targets or [step.target]), service=step.service,
                                     locations=step.locations, container=step.container, filters=list(step.filters))
                for step in graph.steps.values() if isinstance(step, ExecuteStep)}
    policy, policy_config = config_run.policy
    return {"config_digest": _digest(config_run.path), "bindings": bindings, "deployments": deployments,
            "policy": policy, "policy_config": dict(policy_config),
            "binding_filters": {name: {"type": kind, "config": dict(config)}
                                for name, (kind, config) in config_run.filters.items()}}


def apply_recorded_bindings(graph: WorkflowGraph, bindings: dict[str, StepBinding]) -> None:
    """Bind the execute steps as recorded at submission."""
    for step in graph.steps.values():
        binding = bindings.get(step.id)
        if isinstance(step, ExecuteStep) and binding is not None:
            step.target = binding.targets[0] if binding.targets else LOCAL
            step.targets = list(binding.targets)
            step.service = binding.service
            step.locations = binding.locations
            step.container = binding.container
            step.filters = list(binding.filters)


def _get(value: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            value = value[int(part[1:-1])] if isinstance(value, list) and int(part[1:-1]) < len(value) else None
        else:
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def _put(value: Any, path: str, item: Any) -> None:
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for part in parts[:-1]:
        value = value[int(part[1:-1])] if part.startswith("[") else value.setdefault(part, {})
    value[parts[-1]] = item


def config_for_resume(submitted: RunSubmitted) -> ConfigRun:
    """The ``ConfigRun`` of a recorded ``streamflow.yml`` run, from what the run recorded.

    Raises:
        ConfigError: a recorded deployment needs a secret the file no longer gives.
    """
    path = submitted.config or ""
    current: ConfigRun | None = None
    problem = ""
    try:
        current = load_config_run(path)
    except (OSError, ConfigError) as exc:
        problem = str(exc)
    if not submitted.config_digest:  # recorded by an older version: only the path
        if current is None:
            raise ConfigError(f"{path}: cannot read the run's streamflow.yml: {problem}")
        return current
    if current is not None and os.path.isfile(path) and _digest(path) == submitted.config_digest:
        return current  # unchanged: the file itself (with its secrets)
    log.warning("config_changed_since_submission", path=path, reason=problem or "different sha256",
                using="the settings recorded in RunSubmitted")
    deployments: dict[str, DeploymentConfig] = {}
    for name, recorded in submitted.deployments.items():
        plain = {k: v for k, v in recorded.items() if k != SECRETS_KEY}
        for field in recorded.get(SECRETS_KEY, []):
            source = current.deployments.get(name) if current is not None else None
            secret = _get(msgspec.to_builtins(source), field) if source is not None else None
            if secret is None:
                raise ConfigError(f"deployment {name!r}: {field} is a secret the run did not record, and "
                                  f"{path} no longer gives it ({problem or 'changed file'}); restore the file "
                                  f"or the secret to resume")
            _put(plain, field, secret)
        deployments[name] = msgspec.convert(plain, DeploymentConfig)
    base = current if current is not None else None
    from actors.scheduler import local_capacity

    return ConfigRun(path=path, workflow=submitted.workflow, job=submitted.job, retry=retry_settings(submitted),
                     locations={LOCAL: [local_capacity()]}, bindings=base.bindings if base is not None else None,
                     deployments=deployments, config_dir=str(Path(path).parent),
                     policy=(submitted.policy or "data_locality", dict(submitted.policy_config)),
                     filters={name: (str(f.get("type")), dict(f.get("config") or {}))
                              for name, f in submitted.binding_filters.items()})
