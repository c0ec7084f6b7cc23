"""The default Database, ``EventLogDatabase``: projections of a real run's events, and KV-stored rows.

A small workflow (a scatter of 3 jobs, gathered into a second step) runs once per module
through the real CLI against the session's nats-server; every test then opens an
``EventLogDatabase`` on the same bus and reads it back.
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from actors.plugin import ActorsPlugin
from events.log import EventLog
from events.schema import RunCompleted, RunStarted, RunSubmitted, TokenEmitted
from streamflow.bus import EmbeddedServer
from streamflow.core.context import StreamFlowContext
from streamflow.core.persistence import DependencyType
from streamflow.core.workflow import Status
from streamflow.data.manager import DefaultDataManager
from streamflow.errors import StreamFlowError
from streamflow.persistence import ActorOwnedEntityError, EventLogDatabase
from streamflow.plugins import BuiltinPlugin, Registry
from streamflow.scheduling.scheduler import DefaultScheduler
from tests.conftest import run_cli

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  items: string[]
outputs:
  joined:
    type: string
    outputSource: join/out
steps:
  shout:
    run:
      class: CommandLineTool
      baseCommand: [sh, -c, 'printf "%s!" "$0"']
      inputs:
        msg: {type: string, inputBinding: {position: 1}}
      stdout: o.txt
      outputs:
        out: {type: string, outputBinding: {glob: o.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
    scatter: msg
    in: {msg: items}
    out: [out]
  join:
    run:
      class: CommandLineTool
      baseCommand: [echo, -n]
      inputs:
        parts: {type: "string[]", inputBinding: {position: 1}}
      stdout: j.txt
      outputs:
        out: {type: string, outputBinding: {glob: j.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
    in: {parts: shout/out}
    out: [out]
"""


@dataclass(frozen=True)
class ScatterRun:
    """The module's run: its id and workflow name."""

    run_id: str
    name: str


@pytest.fixture(scope="module")
def scatter_run(tmp_path_factory: pytest.TempPathFactory, nats_server: EmbeddedServer) -> ScatterRun:
    """Run the scatter/gather workflow once with the CLI (an ``sf_env`` built for the module)."""
    tmp = tmp_path_factory.mktemp("persistence")
    env = dict(os.environ, STREAMFLOW_HOME=str(tmp / "sfhome"), STREAMFLOW_NATS_URL=nats_server.url,
               STREAMFLOW_NATS_TOKEN=nats_server.token, TMPDIR=str(tmp))
    name = f"persist_{uuid.uuid4().hex[:8]}"
    (tmp / f"{name}.cwl").write_text(WORKFLOW)
    (tmp / "job.yml").write_text(textwrap.dedent("items: [a, b, c]\n"))
    run_id = f"rdb{uuid.uuid4().hex[:10]}"
    result = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp / "out"), str(tmp / f"{name}.cwl"),
                      str(tmp / "job.yml")], env)
    assert result.returncode == 0, result.stderr
    assert '"a! b! c!"' in result.stdout
    return ScatterRun(run_id=run_id, name=name)


@pytest.fixture
async def db(event_log: EventLog) -> AsyncIterator[EventLogDatabase]:
    """An EventLogDatabase opened on the session's event log."""
    database = EventLogDatabase(log=event_log)
    try:
        yield database
    finally:
        await database.close()


async def _workflow_id(db: EventLogDatabase, run: ScatterRun) -> int:
    rows = await db.get_workflows_by_name(run.name, last_only=True)
    assert len(rows) == 1
    workflow_id: int = rows[0]["id"]
    return workflow_id


async def _by_name(rows: list[Any], name: str) -> Any:
    matches = [row for row in rows if row["name"] == name]
    assert len(matches) == 1, (name, [row["name"] for row in rows])
    return matches[0]


async def test_workflow_row(db: EventLogDatabase, scatter_run: ScatterRun) -> None:
    """A run is a workflow row with its name, COMPLETED status and start/end times."""
    workflow_id = await _workflow_id(db, scatter_run)
    row = await db.get_workflow(workflow_id)
    assert row["name"] == scatter_run.name
    assert row["run_id"] == scatter_run.run_id
    assert row["status"] == Status.COMPLETED
    assert 0 < row["start_time"] <= row["end_time"]
    assert row["params"]["inputs"] == {"items": ["a", "b", "c"]}
    summary = await _by_name(await db.get_workflows_list(None), scatter_run.name)
    assert summary["num"] == 1 and summary["last_id"] == workflow_id
    assert [r["id"] for r in await db.get_workflows_list(scatter_run.name)] == [workflow_id]


async def test_steps_and_ports(db: EventLogDatabase, scatter_run: ScatterRun) -> None:
    """Steps and ports come from RunSubmitted, with statuses and step/port dependencies."""
    workflow_id = await _workflow_id(db, scatter_run)
    steps = await db.get_workflow_steps(workflow_id)
    ports = await db.get_workflow_ports(workflow_id)
    assert {"/shout/__scatter__", "/shout", "/join"} <= {s["name"] for s in steps}
    assert all(s["status"] == Status.COMPLETED and s["workflow"] == workflow_id for s in steps)
    shout, join = await _by_name(steps, "/shout"), await _by_name(steps, "/join")
    gathered = await _by_name(ports, "/shout/out")
    assert shout["type"] == "execute"
    assert await db.get_step(join["id"]) == join
    assert await db.get_port(gathered["id"]) == gathered
    assert [(d["port"], d["name"], d["type"]) for d in await db.get_input_ports(join["id"])] == [
        (gathered["id"], "parts", DependencyType.INPUT)]
    assert [d["step"] for d in await db.get_input_steps(gathered["id"])] == [join["id"]]
    writers = [d["step"] for d in await db.get_output_steps(gathered["id"])]
    assert [(await db.get_step(w))["type"] for w in writers] == ["gather"]
    job_out = await _by_name(ports, "/shout/__job__/out")
    assert [d["port"] for d in await db.get_output_ports(shout["id"])] == [job_out["id"]]


async def test_dependencies_from_the_log_alone(event_log: EventLog, scatter_run: ScatterRun) -> None:
    """Without rebuilding the graph, dependencies are inferred from tokens and provenance."""
    database = EventLogDatabase(log=event_log, rebuild_graphs=False)
    workflow_id = await _workflow_id(database, scatter_run)
    steps = await database.get_workflow_steps(workflow_id)
    ports = await database.get_workflow_ports(workflow_id)
    join = await _by_name(steps, "/join")
    gathered = await _by_name(ports, "/shout/out")
    assert [d["port"] for d in await database.get_input_ports(join["id"])] == [gathered["id"]]
    assert [d["port"] for d in await database.get_output_ports(join["id"])] == [
        (await _by_name(ports, "/join/out"))["id"]]


async def test_tokens_and_provenance(db: EventLogDatabase, scatter_run: ScatterRun) -> None:
    """Tokens are TokenEmitted events; the gathered token depends on the 3 scattered ones."""
    workflow_id = await _workflow_id(db, scatter_run)
    ports = await db.get_workflow_ports(workflow_id)
    job_out = await _by_name(ports, "/shout/__job__/out")
    gathered_port = await _by_name(ports, "/shout/out")
    scattered = await db.get_port_tokens(job_out["id"])
    assert len(scattered) == 3
    rows = [await db.get_token(t) for t in scattered]
    assert sorted((r["tag"], r["value"]) for r in rows) == [("0.0", "a!"), ("0.1", "b!"), ("0.2", "c!")]
    assert all(r["port"] == job_out["id"] and r["job"] for r in rows)
    [gathered] = await db.get_port_tokens(gathered_port["id"])
    token = await db.get_token(gathered)
    assert token["tag"] == "0" and token["value"] == ["a!", "b!", "c!"]
    assert (await db.get_port_from_token(gathered))["id"] == gathered_port["id"]
    assert sorted(r["dependee"] for r in await db.get_dependees(gathered)) == sorted(scattered)
    for source in scattered:
        assert [r["depender"] for r in await db.get_dependers(source)] == [gathered]


async def test_executions_and_reports(db: EventLogDatabase, scatter_run: ScatterRun) -> None:
    """Executions are job attempts (JobStarted..JobCompleted); reports list them per run."""
    workflow_id = await _workflow_id(db, scatter_run)
    shout = await _by_name(await db.get_workflow_steps(workflow_id), "/shout")
    executions = await db.get_executions_by_step(shout["id"])
    assert sorted(e["tag"] for e in executions) == ["0.0", "0.1", "0.2"]
    for execution in executions:
        assert execution["status"] == Status.COMPLETED and execution["step"] == shout["id"]
        assert 0 < execution["start_time"] <= execution["end_time"]
        assert await db.get_execution(execution["id"]) == execution
    [report] = await db.get_reports(scatter_run.name)
    assert sorted(r["name"] for r in report) == ["/join/0", "/shout/0.0", "/shout/0.1", "/shout/0.2"]
    assert all(r["workflow"] == workflow_id and r["start_time"] <= r["end_time"] for r in report)
    assert await db.get_reports(scatter_run.name, last_only=True) == [report]


async def test_views_refresh_incrementally(db: EventLogDatabase, event_log: EventLog) -> None:
    """A cached run view and the lifecycle list pick up events appended after the first query."""
    run_id, name = f"rinc{uuid.uuid4().hex[:8]}", f"inc_{uuid.uuid4().hex[:8]}"
    submitted = RunSubmitted(name=name, workflow="/nonexistent.cwl", steps={"s0": "/a"}, ports={"p0": "/a/out"})
    workflow_id = (await event_log.append(run_id, "wf", None, submitted, producer="test")).stream_seq
    await event_log.append(run_id, "wf", None, RunStarted(), producer="test")
    assert (await db.get_workflow(workflow_id))["status"] == Status.RUNNING
    assert (await db.get_workflows_by_name(name))[0]["status"] == Status.RUNNING
    port_id = (await db.get_workflow_ports(workflow_id))[0]["id"]
    assert await db.get_port_tokens(port_id) == []
    token = await event_log.append(run_id, "port", "p0", TokenEmitted(tag="0", value=7, producer="s0"),
                                   producer="port:p0", key="0")
    await event_log.append(run_id, "wf", None, RunCompleted(), producer="test")
    assert await db.get_port_tokens(port_id) == [token.stream_seq]
    assert (await db.get_token(token.stream_seq))["producer"] == (await db.get_workflow_steps(workflow_id))[0]["id"]
    assert (await db.get_workflow(workflow_id))["status"] == Status.COMPLETED
    assert (await db.get_workflows_by_name(name))[0]["status"] == Status.COMPLETED


async def test_unknown_ids_raise_key_error(db: EventLogDatabase, scatter_run: ScatterRun) -> None:
    """Ids that name no entity of the asked kind raise KeyError."""
    workflow_id = await _workflow_id(db, scatter_run)
    with pytest.raises(KeyError):
        await db.get_workflow(workflow_id + 1)  # an event, but not a RunSubmitted
    with pytest.raises(KeyError):
        await db.get_token(workflow_id)  # a RunSubmitted, not a TokenEmitted
    with pytest.raises(KeyError):
        await db.get_step((workflow_id << 20) | 999)
    with pytest.raises(KeyError):
        await db.get_execution(10**12)
    with pytest.raises(KeyError):
        await db.get_deployment(10**9)


async def test_actor_owned_writes_are_refused(db: EventLogDatabase, scatter_run: ScatterRun) -> None:
    """add/update of entities the actors record as events raise a clear ActorOwnedEntityError."""
    workflow_id = await _workflow_id(db, scatter_run)
    with pytest.raises(ActorOwnedEntityError, match="TokenEmitted"):
        await db.add_token("0", "Token", 1)
    with pytest.raises(ActorOwnedEntityError, match="RunSubmitted"):
        await db.add_step("/x", workflow_id, 0, "ExecuteStep", {})
    with pytest.raises(StreamFlowError, match="JobCompleted"):
        await db.update_execution(1, {"status": 4})


async def test_deployment_and_target_round_trip_and_survive_reload(event_log: EventLog) -> None:
    """Deployments and targets are stored in the sf_db bucket, updated, and read by a new instance."""
    first = EventLogDatabase(log=event_log)
    name = f"dep-{uuid.uuid4().hex[:6]}"
    deployment = await first.add_deployment(name, "local", {"transferBufferSize": 1024}, False, True,
                                            "data_locality", "/tmp/sf", None)
    target = await first.add_target(deployment, "Target", {"service": None}, locations=2, workdir="/w")
    other = await first.add_deployment(name + "-2", "local", {}, True, False, None, None, {"deployment": name})
    assert other != deployment
    assert await first.update_deployment(deployment, {"lazy": False}) == deployment
    assert await first.update_target(target, {"locations": 4}) == target
    filter_id = await first.add_filter("shuffle", "shuffle", {})
    await first.close()

    second = EventLogDatabase(log=event_log)
    row = await second.get_deployment(deployment)
    assert row == {"id": deployment, "name": name, "type": "local", "config": {"transferBufferSize": 1024},
                   "external": False, "lazy": False, "scheduling_policy": "data_locality", "workdir": "/tmp/sf",
                   "wraps": None}
    assert (await second.get_deployment(other))["wraps"] == {"deployment": name}
    target_row = await second.get_target(target)
    assert (target_row["deployment"], target_row["locations"], target_row["workdir"]) == (deployment, 4, "/w")
    assert (await second.get_filter(filter_id))["name"] == "shuffle"
    await second.close()


def test_plugin_registers_the_actor_backed_defaults() -> None:
    """ActorsPlugin lists database, scheduler and data manager ``default`` and keeps the failure managers."""
    registry = Registry()
    registry.register_plugin(BuiltinPlugin, name="builtin")
    failure_managers = {n: registry.get("failure_manager", n) for n in registry.names("failure_manager")}
    registry.register_plugin(ActorsPlugin, name="actors")
    entries = registry.list()
    assert ("database", "default", "streamflow.persistence.eventlog.EventLogDatabase") in entries
    assert registry.get("scheduler", "default") is DefaultScheduler
    assert registry.get("data_manager", "default") is DefaultDataManager
    assert {n: registry.get("failure_manager", n) for n in registry.names("failure_manager")} == failure_managers
    assert registry.plugins()["actors"] == "actors.plugin.ActorsPlugin"


async def test_context_builds_the_database_and_connects_lazily(
        scatter_run: ScatterRun, nats_server: EmbeddedServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """A StreamFlowContext builds the registered database, which connects to the configured bus."""
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STREAMFLOW_NATS_TOKEN", nats_server.token)
    registry = Registry()
    registry.register_plugin(BuiltinPlugin)
    registry.register_plugin(ActorsPlugin)
    config = {"database": {"type": "default", "config": {"servers": nats_server.url}}}
    async with StreamFlowContext(
        config,
        checkpoint_manager_class=registry.get("checkpoint_manager", "default"),
        database_class=registry.get("database", "default"),
        data_manager_class=registry.get("data_manager", "default"),
        deployment_manager_class=registry.get("deployment_manager", "default"),
        failure_manager_class=registry.get("failure_manager", "default"),
        scheduler_class=registry.get("scheduler", "default"),
    ) as context:
        assert isinstance(context.database, EventLogDatabase)
        [row] = await context.database.get_workflows_by_name(scatter_run.name)
        assert row["run_id"] == scatter_run.run_id
        assert isinstance(context.scheduler, DefaultScheduler)
        assert await context.scheduler.get_allocation("nothing") is None
        assert isinstance(context.data_manager, DefaultDataManager)
