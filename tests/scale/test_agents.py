"""``streamflow agent``: jobs of a ``--workers 0`` run go to agent processes, which survive each other's death."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cluster import AgentProcess, cli_process, write_scatter_workflow

from events.log import EventLog, Record
from events.schema import JobCompleted, JobStarted, RunCompleted
from streamflow.bus import EmbeddedServer, connect
from streamflow.errors import RunNotFoundError


async def _setup_streams(server: EmbeddedServer) -> None:
    nc = await connect(server.options())
    try:
        await EventLog(nc).setup()
    finally:
        await nc.close()


async def _records(server: EmbeddedServer, run_id: str) -> list[Record]:
    nc = await connect(server.options())
    try:
        try:
            return [r async for r in EventLog(nc).read(run_id)]
        except RunNotFoundError:
            return []
    finally:
        await nc.close()


async def _wait_for(server: EmbeddedServer, run_id: str, predicate: Callable[[list[Record]], Any],
                    timeout: float = 60) -> Any:
    """Poll the run's events until ``predicate`` returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate(await _records(server, run_id))
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s on run {run_id}")


def _started(records: list[Record]) -> list[JobStarted]:
    return [r.body for r in records if isinstance(r.body, JobStarted)]


def _completed(records: list[Record]) -> list[Record]:
    return [r for r in records if isinstance(r.body, JobCompleted)]


def _run(tmp_path: Path, env: dict[str, str], workflow: Path, job: Path, run_id: str) -> subprocess.Popen[bytes]:
    return cli_process(["run", str(workflow), str(job), "--workers", "0", "--run-id", run_id,
                        "--outdir", str(tmp_path / "out")], env,
                       stderr_path=tmp_path / f"{run_id}.err", stdout_path=tmp_path / f"{run_id}.out")


async def _finish(proc: subprocess.Popen[bytes], tmp_path: Path, run_id: str, timeout: float = 120) -> dict[str, Any]:
    code = await asyncio.to_thread(proc.wait, timeout)
    err = (tmp_path / f"{run_id}.err").read_text()
    assert code == 0, err
    outputs: dict[str, Any] = json.loads((tmp_path / f"{run_id}.out").read_text())
    return outputs


async def _exit_code(agent: AgentProcess, timeout: float = 30) -> int:
    return await asyncio.to_thread(agent.process.wait, timeout)


async def test_two_agents_share_a_scatter(tmp_path: Path, private_server: EmbeddedServer,
                                          agent_env: dict[str, str]) -> None:
    """Two agents run the 20 jobs of a ``--workers 0`` scatter between them, each job once, outputs right."""
    agents = [AgentProcess.start(name, agent_env, tmp_path, "--workers", "1") for name in ("a", "b")]
    try:
        # The agents wait for the streams, which the first run (here: the test) creates.
        await asyncio.sleep(0.5)
        assert all(a.process.poll() is None for a in agents)
        await _setup_streams(private_server)
        for agent in agents:
            await asyncio.to_thread(agent.wait_started)
        workflow, job = write_scatter_workflow(tmp_path / "wf", 20, delay=0.05)
        outputs = await _finish(_run(tmp_path, agent_env, workflow, job, "scatter20"), tmp_path, "scatter20")
        assert outputs["squares"] == [n * n for n in range(20)]
        records = await _records(private_server, "scatter20")
        assert {s.worker for s in _started(records)} == {"a", "b"}
        completed = _completed(records)
        assert len(completed) == 20
        assert len({r.body.job for r in completed}) == 20
        assert {r.envelope.producer for r in completed} == {"worker:a", "worker:b"}
        assert any(isinstance(r.body, RunCompleted) for r in records)
        for agent in agents:
            agent.signal(signal.SIGTERM)
        assert [await _exit_code(a) for a in agents] == [0, 0]
    finally:
        for agent in agents:
            agent.stop()


async def test_killed_agent_task_is_redelivered(tmp_path: Path, private_server: EmbeddedServer,
                                                agent_env: dict[str, str]) -> None:
    """SIGKILL on the agent running a long job: the task goes to the other agent, the job completes once."""
    await _setup_streams(private_server)
    agents = {name: AgentProcess.start(name, agent_env, tmp_path, "--workers", "1") for name in ("a", "b")}
    try:
        for agent in agents.values():
            await asyncio.to_thread(agent.wait_started)
        workflow, job = write_scatter_workflow(tmp_path / "wf", 1, delay=3.0)
        job.write_text(json.dumps({"numbers": [7], "delay": 3.0}))
        run = _run(tmp_path, agent_env, workflow, job, "killone")
        first = await _wait_for(private_server, "killone", _started)
        victim = agents[first[0].worker]
        victim.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        outputs = await _finish(run, tmp_path, "killone")
        assert outputs["squares"] == [49]
        records = await _records(private_server, "killone")
        started = _started(records)
        assert [s.delivery for s in started] == [1, 2]
        assert started[0].worker == victim.name
        assert started[1].worker != victim.name
        completed = _completed(records)
        assert len(completed) == 1
        assert completed[0].envelope.producer == f"worker:{started[1].worker}"
        # Redelivery came after ack_wait (2 s here), not after the 30 s default.
        assert time.monotonic() - killed_at < 20
    finally:
        for agent in agents.values():
            agent.stop()


async def test_sigterm_drains_the_running_job(tmp_path: Path, private_server: EmbeddedServer,
                                              agent_env: dict[str, str]) -> None:
    """SIGTERM: the agent takes no new task, records its running job, exits 0; another agent finishes the run."""
    await _setup_streams(private_server)
    first_agent = AgentProcess.start("a", agent_env, tmp_path, "--workers", "1")
    second_agent: AgentProcess | None = None
    try:
        await asyncio.to_thread(first_agent.wait_started)
        workflow, job = write_scatter_workflow(tmp_path / "wf", 3, delay=2.0)
        run = _run(tmp_path, agent_env, workflow, job, "drain")
        started = await _wait_for(private_server, "drain", _started)
        first_agent.signal(signal.SIGTERM)
        assert await _exit_code(first_agent) == 0
        records = await _records(private_server, "drain")
        mine = [s for s in _started(records) if s.worker == "a"]
        assert [s.job for s in mine] == [started[0].job]
        assert [r.body.job for r in _completed(records) if r.envelope.producer == "worker:a"] == [started[0].job]
        events = [line.get("event") for line in first_agent.logs()]
        assert events.index("agent_draining") < events.index("job_completed") < events.index("agent_stopped")
        assert run.poll() is None  # two jobs are left for another agent
        second_agent = AgentProcess.start("b", agent_env, tmp_path, "--workers", "2")
        outputs = await _finish(run, tmp_path, "drain")
        assert outputs["squares"] == [0, 1, 4]
        second_agent.signal(signal.SIGINT)
        assert await _exit_code(second_agent) == 0
    finally:
        first_agent.stop()
        if second_agent is not None:
            second_agent.stop()


async def test_agent_stops_cleanly_while_waiting_for_streams(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """An agent started before any run waits for the streams, and SIGTERM then ends it with exit 0."""
    agent = AgentProcess.start("idle", agent_env, tmp_path)
    try:
        deadline = time.monotonic() + 20
        while not any(line.get("event") == "agent_waiting_for_streams" for line in agent.logs()):
            assert time.monotonic() < deadline, agent.stderr_path.read_text()
            await asyncio.sleep(0.05)
        agent.signal(signal.SIGTERM)
        assert await _exit_code(agent) == 0
    finally:
        agent.stop()


async def test_agent_rejects_invalid_ack_wait(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """A non-positive ``STREAMFLOW_ACK_WAIT`` is a usage error (exit 2), reported on stderr."""
    env = dict(agent_env, STREAMFLOW_ACK_WAIT="-1")
    agent = AgentProcess.start("bad", env, tmp_path)
    try:
        assert await _exit_code(agent) == 2
        assert "STREAMFLOW_ACK_WAIT" in agent.stderr_path.read_text()
    finally:
        agent.stop()


async def test_agents_announce_their_capacity_and_the_run_records_it(
        tmp_path: Path, private_server: EmbeddedServer, agent_env: dict[str, str]) -> None:
    """A ``--workers 0`` run sizes ``__LOCAL__`` from the agents that serve it, not from the submitter."""
    from events.agents import agents_bucket, list_agents
    from events.schema import DeploymentDeployed

    await _setup_streams(private_server)
    nc = await connect(private_server.options())
    try:
        await agents_bucket(nc.jetstream(), create=True)  # what a previous run leaves behind
        agent = AgentProcess.start("pool", agent_env, tmp_path, "--workers", "3")
        try:
            await asyncio.to_thread(agent.wait_started)
            deadline = time.monotonic() + 20
            while not await list_agents(nc.jetstream()):
                assert time.monotonic() < deadline, "the agent never announced itself"
                await asyncio.sleep(0.2)
            [announced] = await list_agents(nc.jetstream())
            assert (announced.deployment, announced.name, announced.workers) == ("__LOCAL__", "pool", 3)
            workflow, job = write_scatter_workflow(tmp_path / "wf", 6, delay=0.05)
            outputs = await _finish(_run(tmp_path, agent_env, workflow, job, "sized"), tmp_path, "sized")
            assert outputs["squares"] == [n * n for n in range(6)]
            deployed = [r.body for r in await _records(private_server, "sized")
                        if isinstance(r.body, DeploymentDeployed)]
            assert [(d.deployment, [(loc.name, loc.slots, loc.cores) for loc in d.locations]) for d in deployed] \
                == [("__LOCAL__", [("pool", 3, 3.0)])]
            agent.signal(signal.SIGTERM)
            assert await _exit_code(agent) == 0
            assert await list_agents(nc.jetstream()) == []  # it withdrew its announcement
        finally:
            agent.stop()
    finally:
        await nc.close()
