"""Tests of loading and validating streamflow.yml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streamflow.config import StepBinding, find_binding, get_schema, load_config
from streamflow.core.deployment import LOCAL_DEPLOYMENT, DeploymentConfig, Target, WrapsConfig
from streamflow.errors import ConfigError, PluginError
from streamflow.plugins import Registry


@pytest.fixture
def registry() -> Registry:
    """A registry loaded with the installed plugins (the built-in one at least)."""
    registry = Registry()
    registry.load()
    return registry


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "wf.cwl").write_text("cwlVersion: v1.2\nclass: Workflow\n")
    (tmp_path / "job.yml").write_text("{}\n")
    path = tmp_path / "streamflow.yml"
    path.write_text(textwrap.dedent(text))
    return path


VALID = """\
version: v1.0
workflows:
  demo:
    type: cwl
    config:
      file: wf.cwl
      settings: job.yml
    bindings:
      - step: /
        target: {deployment: host, workdir: /tmp/w}
      - step: /main/compute
        target:
          - deployment: inner
            service: svc
            locations: 2
      - port: /main/input
        target: {deployment: host, workdir: /data}
deployments:
  host:
    type: local
    workdir: /scratch
  inner:
    type: local
    wraps: host
    scheduling_policy: near
scheduling:
  policies:
    near: {type: data_locality}
failureManager:
  enabled: true
  config: {max_retries: 3, retry_delay: 5}
"""


def test_valid_file_loads_typed_config(tmp_path: Path, registry: Registry) -> None:
    """A valid file yields typed workflows, deployments and manager sections, with paths resolved."""
    config = load_config(_write(tmp_path, VALID), registry)
    workflow = config.workflows["demo"]
    assert workflow.file == str(tmp_path / "wf.cwl") and workflow.settings == str(tmp_path / "job.yml")
    assert config.deployments["inner"].wraps == WrapsConfig(deployment="host")
    assert config.deployments["inner"].workdir == "/scratch"  # inherited along wraps
    assert config.failure_manager.type == "default" and config.failure_manager.config["max_retries"] == 3
    assert config.checkpoint_manager.type == "dummy"
    assert config.database.type == "default" and config.scheduler.type == "default"
    assert config.policies["near"].type == "data_locality"
    assert workflow.get_port_target("/main/input") is not None


def test_binding_lookup_uses_closest_bound_ancestor(tmp_path: Path, registry: Registry) -> None:
    """A step uses the binding of its closest bound ancestor; the root binding covers the rest."""
    workflow = load_config(_write(tmp_path, VALID), registry).workflows["demo"]
    compute = workflow.get_binding("/main/compute/inner")
    assert [(t.deployment.name, t.service, t.locations) for t in compute.targets] == [("inner", "svc", 2)]
    other = workflow.get_binding("/main/other")
    assert other.targets[0].deployment.name == "host" and other.targets[0].workdir == "/tmp/w"


def test_unbound_step_runs_locally() -> None:
    """Without a matching binding a step is bound to the __LOCAL__ deployment."""
    binding = StepBinding(step="/a", targets=[Target(deployment=DeploymentConfig(name="d", type="local"))])
    assert find_binding([binding], "/b/c").targets[0].deployment.name == LOCAL_DEPLOYMENT
    assert find_binding([binding], "a/x/").targets[0].deployment.name == "d"


def _error(tmp_path: Path, text: str, registry: Registry) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text), registry)
    return str(info.value)


def test_schema_errors_name_file_line_and_key(tmp_path: Path, registry: Registry) -> None:
    """A type error reports file:line:column, the key path and what was expected."""
    message = _error(
        tmp_path,
        """\
        version: v1.0
        deployments:
          box:
            type: local
            lazy: "yes"
        """,
        registry,
    )
    assert (
        f"{tmp_path / 'streamflow.yml'}:5:5: deployments.box.lazy: 'yes' is not of type 'boolean'" in message
    )


def test_unknown_top_level_key_and_wrong_version(tmp_path: Path, registry: Registry) -> None:
    """Unknown keys and a wrong version are both reported."""
    message = _error(tmp_path, "version: v2.0\nsurprise: 1\n", registry)
    assert ":1:1: version: 'v1.0' was expected" in message
    assert "<root>: Additional properties are not allowed ('surprise' was unexpected)" in message


def test_missing_required_key_points_at_its_parent(tmp_path: Path, registry: Registry) -> None:
    """A missing required key is reported at the mapping that lacks it."""
    message = _error(
        tmp_path,
        "version: v1.0\nworkflows:\n  demo:\n    type: cwl\n    config: {settings: job.yml}\n",
        registry,
    )
    assert ":5:5: workflows.demo.config: 'file' is a required property" in message


def test_port_binding_requires_workdir(tmp_path: Path, registry: Registry) -> None:
    """A port binding target without workdir is rejected."""
    text = VALID.replace("{deployment: host, workdir: /data}", "{deployment: host}")
    assert "'workdir' is a required property" in _error(tmp_path, text, registry)


def test_connector_config_validated_by_connector_schema(tmp_path: Path, registry: Registry) -> None:
    """A deployment's config is checked against its connector's get_schema()."""
    text = (
        "version: v1.0\ndeployments:\n  box:\n    type: local\n    config:\n      transferBufferSize: big\n"
    )
    message = _error(tmp_path, text, registry)
    assert ":6:7: deployments.box.config.transferBufferSize: 'big' is not of type 'integer'" in message


def test_cross_references_are_checked(tmp_path: Path, registry: Registry) -> None:
    """Undeclared deployments, filters, policies, connector types and cycles are all reported."""
    text = """\
    version: v1.0
    workflows:
      demo:
        type: cwl
        config: {file: missing.cwl}
        bindings:
          - step: /
            target: {deployment: ghost}
            filters: [shuffle]
    deployments:
      a: {type: local, wraps: b}
      b: {type: local, wraps: {deployment: a}}
      c: {type: kube, scheduling_policy: fast}
    """
    message = _error(tmp_path, text, registry)
    assert "workflows.demo.config.file: file not found" in message
    assert (
        ":8:18: workflows.demo.bindings[0].target.deployment: deployment 'ghost' is not declared" in message
    )
    assert "workflows.demo.bindings[0].filters[0]: binding filter 'shuffle' is not defined" in message
    assert "deployments.a.wraps: circular wraps chain: a -> b -> a" in message
    assert "deployments.c.type: no connector named 'kube' is registered" in message
    assert "deployments.c.scheduling_policy: policy 'fast' is not declared" in message


def test_manager_config_validated_and_type_resolved(tmp_path: Path, registry: Registry) -> None:
    """An explicit type wins; its config is validated by the registered class's schema."""
    message = _error(
        tmp_path, "version: v1.0\nfailureManager:\n  type: retry\n  config: {max_retries: -2}\n", registry
    )
    assert ":4:12: failureManager.config.max_retries: -2 is less than the minimum of 0" in message
    message = _error(tmp_path, "version: v1.0\ncheckpointManager: {type: fancy}\n", registry)
    assert "checkpointManager.type: no checkpoint_manager named 'fancy'" in message


def test_yaml_syntax_error_names_the_line(tmp_path: Path, registry: Registry) -> None:
    """Broken YAML is a ConfigError naming file and line."""
    message = _error(tmp_path, "version: v1.0\ndeployments: [\n  a: 1\n", registry)
    assert f"{tmp_path / 'streamflow.yml'}:" in message and "invalid YAML" in message


def test_missing_and_empty_files(tmp_path: Path, registry: Registry) -> None:
    """A missing or empty file is a ConfigError."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.yml", registry)
    (tmp_path / "empty.yml").write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(tmp_path / "empty.yml", registry)


def test_models_alias_and_deprecated_target_keys(tmp_path: Path, registry: Registry) -> None:
    """`models`, `model` and `resources` are accepted as deprecated aliases."""
    text = """\
    version: v1.0
    workflows:
      demo:
        type: cwl
        config: {file: wf.cwl}
        bindings:
          - step: /s
            target: {model: m, resources: 3}
    models:
      m: {type: local}
    """
    config = load_config(_write(tmp_path, text), registry)
    target = config.workflows["demo"].get_binding("/s").targets[0]
    assert target.deployment.name == "m" and target.locations == 3


def test_schema_is_draft_2020_12() -> None:
    """The shipped schema declares draft 2020-12 and requires version."""
    schema = get_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and schema["required"] == [
        "version"
    ]
    with pytest.raises(ConfigError, match="unknown configuration version"):
        get_schema("v9")


def test_build_context_reports_unregistered_managers(tmp_path: Path) -> None:
    """build_context raises PluginError when a named manager is not registered."""
    from streamflow.config import build_context

    registry = Registry()
    config = load_config(_write(tmp_path, "version: v1.0\n"), Registry.default())
    with pytest.raises(PluginError, match="no checkpoint_manager named 'dummy'"):
        build_context(config, registry)


def test_docker_entries_choose_the_container_translator_of_each_step(tmp_path: Path) -> None:
    """``config.docker`` binds steps to a container translator; the closest entry wins; others fail early."""
    from streamflow.cli.config_run import apply_bindings, load_config_run
    from streamflow.cli.engine import prepare
    from streamflow.workflow.graph import ExecuteStep

    (tmp_path / "tool.cwl").write_text("cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [echo]\n"
                                       "inputs: []\noutputs: []\n")
    (tmp_path / "wf.cwl").write_text(textwrap.dedent("""\
        cwlVersion: v1.2
        class: Workflow
        inputs: []
        outputs: []
        steps:
          first: {run: tool.cwl, in: [], out: []}
          second: {run: tool.cwl, in: [], out: []}
        """))
    config = tmp_path / "streamflow.yml"

    def _config(entries: str) -> Path:
        config.write_text("version: v1.0\nworkflows:\n  demo:\n    type: cwl\n    config:\n      file: wf.cwl\n"
                          f"      docker:\n{textwrap.indent(textwrap.dedent(entries), '        ')}")
        return config

    run = load_config_run(str(_config("""\
        - {step: /, deployment: {type: none}}
        - {step: /second, deployment: {type: podman}}
        """)))
    prepared = prepare(run.workflow, None)
    apply_bindings(prepared.graph, run)
    chosen = {step.name: step.container for step in prepared.graph.steps.values() if isinstance(step, ExecuteStep)}
    assert chosen == {"/first": "none", "/second": "podman"}
    with pytest.raises(ConfigError, match=r"config\.docker\[0\].*none \| auto \| docker \| podman"):
        load_config_run(str(_config("- {step: /, deployment: {type: singularity}}\n")))
