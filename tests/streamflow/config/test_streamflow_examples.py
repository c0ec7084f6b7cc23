"""StreamFlow users' files are accepted: the shapes of the original project's examples.

``tests/data/streamflow_examples`` holds files written for these tests with the keys and
structure of StreamFlow's ``examples/mpi``, ``examples/flux`` and ``examples/failure``
``streamflow.yml`` (docker-compose with services and ``locations: 2``, helm, flux, and the
older ``models``/``model``/``failure_manager``/``scheduler`` keys). Loading one must give
the bindings and settings it declares; running one needs its back end (a compose client
with an engine, a Flux instance, a Kubernetes cluster) and is not attempted here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.cli.config_run import apply_bindings, load_config_run
from streamflow.cli.engine import prepare
from streamflow.workflow.graph import ExecuteStep

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "streamflow_examples"


def _bound(name: str) -> dict[str, ExecuteStep]:
    run = load_config_run(str(EXAMPLES / name))
    prepared = prepare(run.workflow, run.job)
    apply_bindings(prepared.graph, run)
    return {step.name: step for step in prepared.graph.steps.values() if isinstance(step, ExecuteStep)}


def test_mpi_example_binds_compose_services_with_co_allocation() -> None:
    run = load_config_run(str(EXAMPLES / "mpi.yml"))
    assert set(run.deployments) == {"dc-mpi"}  # helm-mpi is declared but not bound: never deployed
    assert run.deployments["dc-mpi"].type == "docker-compose"
    assert run.deployments["dc-mpi"].config["compatibility"] is True
    steps = _bound("mpi.yml")
    assert (steps["/compile"].target, steps["/compile"].service, steps["/compile"].locations) == ("dc-mpi", "openmpi", 1)
    assert (steps["/execute"].target, steps["/execute"].service, steps["/execute"].locations) == ("dc-mpi", "openmpi", 2)


def test_flux_example_binds_both_steps_to_flux() -> None:
    run = load_config_run(str(EXAMPLES / "flux.yml"))
    assert run.deployments["dc-mpi"].type == "flux"
    assert {s.target for s in _bound("flux.yml").values()} == {"dc-mpi"}


def test_failure_example_with_the_older_keys() -> None:
    run = load_config_run(str(EXAMPLES / "failure.yml"))
    assert run.deployments["helm-failure"].type == "helm"
    assert (run.retry.max_retries, run.retry.retry_delay) == (50, 5.0)
    assert {(s.target, s.service) for s in _bound("failure.yml").values()} == {("helm-failure", "debian")}


def test_a_connector_that_does_not_exist_is_named(tmp_path: Path) -> None:
    from streamflow.errors import ConfigError

    text = (EXAMPLES / "flux.yml").read_text().replace("type: flux", "type: fluxx")
    (tmp_path / "main.cwl").write_text((EXAMPLES / "main.cwl").read_text())
    (tmp_path / "config.yml").write_text("source: {class: File, path: main.cwl}\n")
    (tmp_path / "streamflow.yml").write_text(text)
    with pytest.raises(ConfigError, match=r"deployments\.dc-mpi\.type.*fluxx"):
        load_config_run(str(tmp_path / "streamflow.yml"))


def test_binding_filters_reach_the_steps(tmp_path: Path) -> None:
    (tmp_path / "main.cwl").write_text((EXAMPLES / "main.cwl").read_text())
    (tmp_path / "config.yml").write_text("source: {class: File, path: main.cwl}\n")
    (tmp_path / "streamflow.yml").write_text("""\
version: v1.0
workflows:
  master:
    type: cwl
    config: {file: main.cwl, settings: config.yml}
    bindings:
      - step: /execute
        target: [{deployment: a}, {deployment: b}]
        filters: [spread]
deployments:
  a: {type: local, config: {}}
  b: {type: local, config: {}}
bindingFilters:
  spread: {type: shuffle, config: {seed: 3}}
""")
    run = load_config_run(str(tmp_path / "streamflow.yml"))
    assert run.filters == {"spread": ("shuffle", {"seed": 3})}
    prepared = prepare(run.workflow, run.job)
    apply_bindings(prepared.graph, run)
    steps = {s.name: s for s in prepared.graph.steps.values() if isinstance(s, ExecuteStep)}
    assert (steps["/execute"].targets, steps["/execute"].filters) == (["a", "b"], ["spread"])
    assert (steps["/compile"].targets, steps["/compile"].filters) == (["__LOCAL__"], [])
