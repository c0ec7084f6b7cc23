"""Loading and validating ``streamflow.yml`` (JSON Schema draft 2020-12, with line numbers)."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

import jsonschema  # type: ignore[import-untyped]
from jsonschema.exceptions import best_match  # type: ignore[import-untyped]
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from streamflow.config._model import PluginConfig, PortBinding, StepBinding, StreamFlowConfig, WorkflowConfig
from streamflow.core.deployment import DeploymentConfig, FilterConfig, Target, WrapsConfig
from streamflow.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.plugins import Registry

__all__ = ["build_context", "get_schema", "load_config", "validate_config"]

KeyPath = tuple[str | int, ...]

_SECTIONS: dict[str, str] = {
    "database": "database",
    "dataManager": "data_manager",
    "deploymentManager": "deployment_manager",
    "checkpointManager": "checkpoint_manager",
    "failureManager": "failure_manager",
}


_LEGACY_TOP_LEVEL = {"failure_manager": "failureManager", "checkpoint_manager": "checkpointManager",
                     "data_manager": "dataManager", "deployment_manager": "deploymentManager"}


def _legacy_keys(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept the top-level keys of older StreamFlow files (``failure_manager``, a top-level
    ``scheduler``...) under their current names, when the current name is not used too."""
    if not isinstance(raw, Mapping):
        return raw
    renamed = dict(raw)
    for old, new in _LEGACY_TOP_LEVEL.items():
        if old in renamed and new not in renamed:
            renamed[new] = renamed.pop(old)
    if "scheduler" in renamed and "scheduling" not in renamed:
        scheduler = renamed.pop("scheduler")
        if isinstance(scheduler, Mapping) and "type" not in scheduler:
            scheduler = {"type": "default", **scheduler}
        renamed["scheduling"] = {"scheduler": scheduler}
    return renamed


@functools.cache
def get_schema(version: str = "v1.0") -> dict[str, Any]:
    """Return the JSON Schema of the ``streamflow.yml`` format ``version`` (shipped in the package).

    Raises:
        ConfigError: if the version is unknown.
    """
    try:
        text = resources.files("streamflow.config").joinpath(f"config_schema_{version}.json").read_text()
    except FileNotFoundError as exc:
        raise ConfigError(f"unknown configuration version {version!r}") from exc
    schema: dict[str, Any] = json.loads(text)
    return schema


def _plain(node: Any) -> Any:
    """Convert ruamel round-trip nodes into plain JSON-like Python data."""
    if isinstance(node, Mapping):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list | tuple):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _format_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<root>"


class _Locator:
    """Maps key paths of the round-trip document to 1-based (line, column)."""

    def __init__(self, document: Any) -> None:
        self.document = document

    def __call__(self, path: KeyPath) -> tuple[int, int]:
        node = self.document
        line, col = 0, 0
        for part in path:
            lc: Any = getattr(node, "lc", None)
            try:
                if isinstance(node, Mapping) and part in node:
                    line, col = lc.key(part)
                elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                    line, col = lc.item(part)
                else:
                    break
                node = node[part]
            except (AttributeError, KeyError, IndexError, TypeError):
                break
        return line + 1, col + 1


class _Validator:
    """Collects schema and cross-reference problems, then raises one :class:`ConfigError`."""

    def __init__(self, path: str, locate: _Locator) -> None:
        self.path = path
        self.locate = locate
        self.issues: list[tuple[int, int, str]] = []

    def add(self, path: KeyPath, message: str) -> None:
        line, col = self.locate(path)
        self.issues.append((line, col, f"{self.path}:{line}:{col}: {_format_path(path)}: {message}"))

    def check_schema(self, schema: Mapping[str, Any], instance: Any, prefix: KeyPath = ()) -> bool:
        validator = jsonschema.Draft202012Validator(schema)
        ok = True
        for error in validator.iter_errors(instance):
            ok = False
            best = best_match([error])
            self.add(prefix + tuple(best.absolute_path), best.message)
        return ok

    def raise_if_any(self) -> None:
        if self.issues:
            lines = [text for _, _, text in sorted(self.issues)]
            summary = f"{len(lines)} problem(s) in {self.path}:\n" + "\n".join(lines)
            raise ConfigError(summary)


def _read(path: str) -> Any:
    yaml = YAML(typ="rt")
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from exc


def _plugin_section(
    check: _Validator, registry: Registry, kind: str, data: Mapping[str, Any], key: KeyPath, default: str
) -> PluginConfig:
    type_name = str(data.get("type", default))
    config = dict(data.get("config") or {})
    if "type" in data or config:
        try:
            cls = registry.get(kind, type_name)
        except PluginError as exc:
            check.add((*key, "type") if "type" in data else key, str(exc))
        else:
            check.check_schema(cls.get_schema(), config, (*key, "config"))
    return PluginConfig(type=type_name, config=config)


def _switchable(
    check: _Validator, registry: Registry, kind: str, data: Mapping[str, Any] | None, key: KeyPath
) -> PluginConfig:
    data = data or {}
    default = "default" if data.get("enabled", False) else "dummy"
    if "type" not in data and not data.get("enabled", False):
        return PluginConfig(type="dummy", config=dict(data.get("config") or {}))
    return _plugin_section(check, registry, kind, data, key, default)


def _deployments(
    check: _Validator, registry: Registry, raw: Mapping[str, Any]
) -> dict[str, DeploymentConfig]:
    key = "deployments" if "deployments" in raw else "models"
    section: Mapping[str, Any] = raw.get("deployments", raw.get("models")) or {}
    policies = (raw.get("scheduling") or {}).get("policies") or {}
    result: dict[str, DeploymentConfig] = {}
    for name, data in section.items():
        wraps_data = data.get("wraps")
        wraps = None
        if isinstance(wraps_data, str):
            wraps = WrapsConfig(deployment=wraps_data)
        elif isinstance(wraps_data, Mapping):
            wraps = WrapsConfig(deployment=wraps_data["deployment"], service=wraps_data.get("service"))
        if wraps is not None and wraps.deployment not in section:
            check.add((key, name, "wraps"), f"deployment {wraps.deployment!r} is not declared in {key}")
        policy = data.get("scheduling_policy")
        if policy is not None and policy not in policies:
            check.add(
                (key, name, "scheduling_policy"), f"policy {policy!r} is not declared in scheduling.policies"
            )
        try:
            cls = registry.get("connector", data["type"])
        except PluginError as exc:
            check.add((key, name, "type"), str(exc))
        else:
            check.check_schema(cls.get_schema(), data.get("config") or {}, (key, name, "config"))
        result[name] = DeploymentConfig(
            name=name,
            type=data["type"],
            config=dict(data.get("config") or {}),
            external=bool(data.get("external", False)),
            lazy=bool(data.get("lazy", True)),
            scheduling_policy=policy,
            workdir=data.get("workdir"),
            wraps=wraps,
        )
    # Circular chains, and workdir inherited along wraps.
    for name in result:
        chain = [name]
        current = result[name]
        while current.wraps is not None and current.wraps.deployment in result:
            inner = current.wraps.deployment
            if inner in chain:
                check.add((key, name, "wraps"), f"circular wraps chain: {' -> '.join([*chain, inner])}")
                break
            chain.append(inner)
            current = result[inner]
    for name, config in list(result.items()):
        if config.workdir is None:
            seen = {name}
            inner_config = config
            while inner_config.wraps is not None and inner_config.wraps.deployment in result:
                if inner_config.wraps.deployment in seen:
                    break
                seen.add(inner_config.wraps.deployment)
                inner_config = result[inner_config.wraps.deployment]
                if inner_config.workdir is not None:
                    result[name] = DeploymentConfig(
                        name=config.name,
                        type=config.type,
                        config=config.config,
                        external=config.external,
                        lazy=config.lazy,
                        scheduling_policy=config.scheduling_policy,
                        workdir=inner_config.workdir,
                        wraps=config.wraps,
                    )
                    break
    return result


def _target(
    check: _Validator, data: Mapping[str, Any], key: KeyPath, deployments: Mapping[str, DeploymentConfig]
) -> Target | None:
    dep_key = "deployment" if "deployment" in data else "model"
    name: str = data[dep_key]
    if name not in deployments:
        check.add((*key, dep_key), f"deployment {name!r} is not declared in deployments")
        return None
    return Target(
        deployment=deployments[name],
        locations=int(data.get("locations", data.get("resources", 1))),
        service=data.get("service"),
        workdir=data.get("workdir"),
    )


def _workflows(
    check: _Validator,
    raw: Mapping[str, Any],
    config_dir: str,
    deployments: Mapping[str, DeploymentConfig],
    filters: Mapping[str, FilterConfig],
) -> dict[str, WorkflowConfig]:
    result: dict[str, WorkflowConfig] = {}
    for name, data in (raw.get("workflows") or {}).items():
        cfg = data["config"]
        paths: dict[str, str | None] = {}
        for field in ("file", "settings"):
            value = cfg.get(field)
            paths[field] = None if value is None else os.path.normpath(os.path.join(config_dir, value))
            if paths[field] is not None and not os.path.exists(str(paths[field])):
                check.add(("workflows", name, "config", field), f"file not found: {paths[field]}")
        step_bindings: list[StepBinding] = []
        port_bindings: list[PortBinding] = []
        for index, binding in enumerate(data.get("bindings") or []):
            key: KeyPath = ("workflows", name, "bindings", index)
            if "port" in binding:
                target = _target(check, binding["target"], (*key, "target"), deployments)
                if target is not None:
                    port_bindings.append(PortBinding(port=binding["port"], target=target))
                continue
            target_data = binding["target"]
            items = target_data if isinstance(target_data, list) else [target_data]
            targets: list[Target] = []
            for position, item in enumerate(items):
                target_key: KeyPath = (
                    (*key, "target", position) if isinstance(target_data, list) else (*key, "target")
                )
                if (target := _target(check, item, target_key, deployments)) is not None:
                    targets.append(target)
            binding_filters: list[FilterConfig] = []
            for position, filter_name in enumerate(binding.get("filters") or []):
                if filter_name in filters:
                    binding_filters.append(filters[filter_name])
                else:
                    check.add(
                        (*key, "filters", position),
                        f"binding filter {filter_name!r} is not defined in bindingFilters",
                    )
            step_bindings.append(StepBinding(step=binding["step"], targets=targets, filters=binding_filters))
        result[name] = WorkflowConfig(
            name=name,
            type=data["type"],
            file=str(paths["file"]),
            settings=paths["settings"],
            docker=list(cfg.get("docker") or []),
            bindings=step_bindings,
            port_bindings=port_bindings,
        )
    return result


def validate_config(
    raw: Mapping[str, Any], path: str, registry: Registry | None = None, document: Any = None
) -> StreamFlowConfig:
    """Validate plain configuration data and build the typed configuration.

    Args:
        raw: the configuration as plain data.
        path: the file it came from (for messages and relative paths).
        registry: where plugin names are looked up; the default registry if ``None``.
        document: the ruamel round-trip document, for line numbers (optional).

    Returns:
        The typed configuration.

    Raises:
        ConfigError: listing every problem as ``file:line:column: key.path: message``.
    """
    if registry is None:
        from streamflow.plugins import Registry

        registry = Registry.default()
    path = os.path.abspath(path)
    check = _Validator(path, _Locator(document if document is not None else raw))
    if not isinstance(raw, Mapping):
        check.add((), f"expected a mapping at the top level, got {type(raw).__name__}")
        check.raise_if_any()
    raw = _legacy_keys(raw)
    version = raw.get("version")
    if not check.check_schema(get_schema("v1.0"), raw):
        check.raise_if_any()
    config_dir = os.path.dirname(path)
    deployments = _deployments(check, registry, raw)
    binding_filters: dict[str, FilterConfig] = {}
    for name, data in (raw.get("bindingFilters") or {}).items():
        plugin = _plugin_section(check, registry, "binding_filter", data, ("bindingFilters", name), "")
        binding_filters[name] = FilterConfig(name=name, type=plugin.type, config=plugin.config)
    scheduling = raw.get("scheduling") or {}
    policies = {
        name: _plugin_section(check, registry, "policy", data, ("scheduling", "policies", name), "")
        for name, data in (scheduling.get("policies") or {}).items()
    }
    scheduler = _plugin_section(
        check,
        registry,
        "scheduler",
        scheduling.get("scheduler") or {},
        ("scheduling", "scheduler"),
        "default",
    )
    sections: dict[str, PluginConfig] = {}
    for key, kind in _SECTIONS.items():
        if key in ("checkpointManager", "failureManager"):
            sections[kind] = _switchable(check, registry, kind, raw.get(key), (key,))
        else:
            sections[kind] = _plugin_section(check, registry, kind, raw.get(key) or {}, (key,), "default")
    workflows = _workflows(check, raw, config_dir, deployments, binding_filters)
    check.raise_if_any()
    return StreamFlowConfig(
        path=path,
        config_dir=config_dir,
        version=str(version),
        workflows=workflows,
        deployments=deployments,
        binding_filters=binding_filters,
        scheduler=scheduler,
        policies=policies,
        database=sections["database"],
        data_manager=sections["data_manager"],
        deployment_manager=sections["deployment_manager"],
        checkpoint_manager=sections["checkpoint_manager"],
        failure_manager=sections["failure_manager"],
        raw=dict(raw),
    )


def load_config(path: str | os.PathLike[str], registry: Registry | None = None) -> StreamFlowConfig:
    """Load and validate a ``streamflow.yml`` file.

    Relative paths (workflow files, settings) are resolved against the file's directory.
    Connector and manager ``config`` blocks are validated against the schema of the class
    registered under their ``type``.

    Args:
        path: the file.
        registry: where plugin names are looked up; the default registry if ``None``.

    Returns:
        The typed configuration.

    Raises:
        ConfigError: if the file cannot be read or parsed, or does not validate; the message
            names the file, the line and column, the key path and what was expected.
    """
    path = os.fspath(path)
    document = _read(path)
    if document is None:
        raise ConfigError(
            f"{os.path.abspath(path)}:1:1: <root>: the file is empty; expected a mapping with 'version'"
        )
    return validate_config(_plain(document), path, registry, document)


def build_context(config: StreamFlowConfig, registry: Registry | None = None) -> StreamFlowContext:
    """Build a :class:`~streamflow.core.context.StreamFlowContext` with the classes ``config`` names.

    Raises:
        streamflow.errors.PluginError: if a named implementation is not registered.
    """
    from streamflow.core.context import StreamFlowContext

    if registry is None:
        from streamflow.plugins import Registry

        registry = Registry.default()
    return StreamFlowContext(
        config.context_config(),
        checkpoint_manager_class=registry.get("checkpoint_manager", config.checkpoint_manager.type),
        database_class=registry.get("database", config.database.type),
        data_manager_class=registry.get("data_manager", config.data_manager.type),
        deployment_manager_class=registry.get("deployment_manager", config.deployment_manager.type),
        failure_manager_class=registry.get("failure_manager", config.failure_manager.type),
        scheduler_class=registry.get("scheduler", config.scheduler.type),
    )
