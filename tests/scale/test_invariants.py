"""Invariants of the design (issue 14, points 7-12): fencing, one writer per fact, leases,
snapshots per actor group, what resume needs recorded in the log, poison tasks and borrowed
jobs. Real nats-server, real processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.lease import LeaseInfo, acquire_lease
from streamflow.bus import EmbeddedServer, connect
from streamflow.errors import LeaseError
from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "durability"
CODE = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
ITEMS = ["a", "b", "c", "d"]


def _job(tmp_path: Path, *, flag: bool = True, delay: float = 0.2) -> Path:
    (tmp_path / "counter").mkdir(exist_ok=True)
    if flag:
        (tmp_path / "flag").write_text("ok")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"items": ITEMS, "counter": str(tmp_path / "counter"), "flag": str(tmp_path / "flag"),
                               "delay": delay}))
    return job


def _events(run_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_cli(["events", run_id, "--json"], env)
    if result.returncode != 0:
        return []
    return [json.loads(line) for line in result.stdout.splitlines()]


def _wait_for(run_id: str, env: dict[str, str], kind: str, timeout: float = 60) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = _events(run_id, env)
        if any(e["type"] == kind for e in events):
            return events
        time.sleep(0.2)
    raise AssertionError(f"no {kind} in {run_id} within {timeout}s")


def _popen(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CODE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.communicate()


_STALE_WRITER = textwrap.dedent("""
    import asyncio, sys
    from actors._runtime import Actor, RunContext
    from events.lease import acquire_lease, lease_key, write_fence
    from events.log import EventLog
    from events.schema import StepFailed
    from streamflow.bus import BusOptions, connect
    from streamflow.errors import FencedError
    from streamflow.workflow.graph import WorkflowGraph

    class Writer(Actor):
        def interested(self, record): return False
        def apply(self, record): pass
        async def react(self): pass

    async def main(url, token, run_id, ready):
        nc = await connect(BusOptions(servers=[url], token=token))
        log = EventLog(nc); await log.setup()
        lease = await acquire_lease(log.js, lease_key(run_id, "steps"), ttl=1.0)
        fence = await write_fence(log, run_id, "steps", lease)
        ctx = RunContext(run_id=run_id, nc=nc, log=log, graph=WorkflowGraph(name="x"), workdir=".", outdir=".",
                         fences={"steps": fence})
        actor = Writer(ctx, "step:s9"); actor.group = "steps"
        await actor.append("step", "s9", StepFailed(error="before the pause"), key="a")
        open(ready, "w").write("ready")
        while not __import__("os").path.exists(ready + ".go"):
            await asyncio.sleep(0.05)   # SIGSTOP lands here; the lease expires meanwhile
        try:
            await actor.append("step", "s9", StepFailed(error="after the pause"), key="b")
            print("WROTE")
        except FencedError as exc:
            print("FENCED", exc)
        await nc.close()

    asyncio.run(main(*sys.argv[1:]))
""")


async def test_a_stale_lease_holder_paused_past_its_lease_writes_nothing(tmp_path: Path,
                                                                          private_server: EmbeddedServer) -> None:
    """SIGSTOP a group's lease holder past its ttl, let another process take the lease, SIGCONT it: its
    next append is refused by the server (fence), and nothing of it is stored after the takeover."""
    from events.lease import lease_key, write_fence
    from events.log import EventLog

    run_id = "stale1"
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", _STALE_WRITER, private_server.url, private_server.token, run_id,
                             str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(REPO))
    nc = await connect(private_server.options())
    try:
        log = EventLog(nc)
        await log.setup()
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        os.kill(proc.pid, signal.SIGSTOP)
        await asyncio.sleep(1.5)  # past the holder's 1 s ttl
        lease = await acquire_lease(log.js, lease_key(run_id, "steps"))  # stale: taken over
        fence = await write_fence(log, run_id, "steps", lease)
        os.kill(proc.pid, signal.SIGCONT)
        Path(f"{ready}.go").write_text("go")
        out, err = await asyncio.to_thread(proc.communicate, timeout=30)
        assert out.startswith("FENCED"), (out, err)
        records = [r async for r in log.read(run_id)]
        errors = [r.body.error for r in records if r.subject.endswith(".step.s9")]
        assert errors == ["before the pause"]
        assert all(r.stream_seq < fence.seq for r in records if r.envelope.epoch != lease.epoch)
        await lease.release()
    finally:
        _kill(proc)
        await nc.close()


async def test_a_renewal_whose_acknowledgement_was_lost_keeps_the_lease(private_server: EmbeddedServer) -> None:
    """A renewal that landed but whose ack never arrived is recognised by the owner token; another
    process's update is still reported as a takeover."""
    nc = await connect(private_server.options())
    try:
        js = nc.jetstream()
        lease = await acquire_lease(js, "acklost", ttl=0.6)
        # What the lost acknowledgement hid: our own renewal, stored at a newer revision.
        mine = LeaseInfo(host="h", pid=os.getpid(), renewed_at=time.time(), ttl=0.6, owner=lease.owner)
        landed = await lease.kv.update("acklost", msgspec.json.encode(mine), last=lease.revision)
        stop = asyncio.Event()
        keeper = asyncio.create_task(lease.keep_alive(stop))
        await asyncio.sleep(0.9)  # a few renewals
        assert not keeper.done(), keeper.exception() if keeper.done() else None
        assert lease.revision > landed
        other = LeaseInfo(host="h", pid=1, renewed_at=time.time(), ttl=0.6, owner="someone-else")
        await lease.kv.update("acklost", msgspec.json.encode(other), last=lease.revision)
        with pytest.raises(LeaseError, match="taken by another process"):
            await asyncio.wait_for(keeper, 5)
    finally:
        await nc.close()


def test_a_full_host_holds_every_group_lease(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """While `run` (no --actors) hosts a run, `host RUN --actors steps` is refused: no second set of steps."""
    run_id = "fullhost"
    runner = _popen(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                     str(_job(tmp_path, delay=2.0))], agent_env)
    try:
        _wait_for(run_id, agent_env, "JobStarted")
        second = run_cli(["host", run_id, "--actors", "steps", "--wait", "5"], agent_env, timeout=60)
        assert second.returncode == 2, second.stderr
        assert "live in process" in second.stderr
        _, err = runner.communicate(timeout=120)
        assert runner.returncode == 0, err
    finally:
        _kill(runner)
    events = _events(run_id, agent_env)
    assert sorted(e["group"] for e in events if e["type"] == "LeaseTaken") == sorted(
        ["steps", "ports", "scheduler", "data-manager", "failure-manager", "supervisor"])


def test_cancel_of_a_live_but_silent_run_writes_nothing(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """`cancel` of a run whose supervisor holds its lease but does not answer (paused) is refused: `wf`
    has one writer, the lease holder. Once the holder is gone, `cancel` records it under the lease."""
    run_id = "silent1"
    runner = _popen(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                     str(_job(tmp_path, delay=3.0))], agent_env)
    try:
        _wait_for(run_id, agent_env, "JobStarted")
        os.kill(runner.pid, signal.SIGSTOP)
        refused = run_cli(["cancel", run_id], agent_env, timeout=60)
        assert refused.returncode == 1, refused.stderr
        assert "did not answer" in refused.stderr
        assert not any(e["type"] == "RunCancelled" for e in _events(run_id, agent_env))
        os.kill(runner.pid, signal.SIGKILL)
        runner.communicate()
        cancelled = run_cli(["cancel", run_id], agent_env, timeout=60)
        assert cancelled.returncode == 0, cancelled.stderr
    finally:
        _kill(runner)
    events = _events(run_id, agent_env)
    fences = [e for e in events if e["type"] == "LeaseTaken" and e["group"] == "supervisor"]
    final = events[-1]
    assert final["type"] == "RunCancelled" and final["epoch"] == fences[-1]["epoch"]
    assert final["seq"] > fences[-1]["seq"]


def test_host_after_a_resume_queues_tasks_of_the_current_generation(tmp_path: Path,
                                                                     agent_env: dict[str, str]) -> None:
    """run (crash) -> resume (crash) -> `host` of every group: its tasks carry the run's generation, so
    workers run them instead of dropping them as left over from before the resume."""
    run_id = "hostgen"
    job = _job(tmp_path, delay=0.5)
    crash = dict(agent_env, STREAMFLOW_CRASH_AFTER="JobStarted:1")
    first = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                     str(job)], crash, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    again = run_cli(["resume", run_id], crash, timeout=120)
    assert again.returncode == -signal.SIGKILL, again.stderr
    hosted = run_cli(["host", run_id, "--actors", "steps,ports,scheduler,data-manager,failure-manager,supervisor",
                      "--workers", "2", "--wait", "5"], agent_env, timeout=90)
    assert hosted.returncode == 0, hosted.stderr
    assert _events(run_id, agent_env)[-1]["type"] == "RunCompleted"


def test_snapshots_are_taken_and_restored_per_actor_group(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """Split hosting snapshots each group under its own key and ckpt subject; a resume restores only what
    each group's snapshot covers and completes the run."""
    run_id = "snapgroups"
    env = dict(agent_env, STREAMFLOW_SNAPSHOT_EVERY="10")
    host = _popen(["host", run_id, "--actors", "scheduler,data-manager,failure-manager", "--wait", "60"],
                  dict(env, STREAMFLOW_SNAPSHOT_EVERY="0"))
    try:
        runner = _popen(["run", "--run-id", run_id, "--actors", "steps,ports,supervisor", "--outdir",
                         str(tmp_path / "out"), str(DATA / "pipeline.cwl"), str(_job(tmp_path, flag=False, delay=0.3))],
                        env)
        _, err = runner.communicate(timeout=120)
        assert runner.returncode == 1, err  # the gathering job fails without its flag file
        host.communicate(timeout=60)
    finally:
        _kill(host)
    events = _events(run_id, agent_env)
    ckpt = {e["subject"].split(".")[-1] for e in events if e["type"] == "CheckpointTaken"}
    assert ckpt == {"steps", "ports", "supervisor"}, ckpt  # the other host took none (every=0)
    (tmp_path / "flag").write_text("ok")
    rerun = run_cli(["rerun", run_id, "--run-id", "snapgroups2"], env, timeout=120)
    assert rerun.returncode == 0, rerun.stderr


def test_resume_keeps_the_retry_policy_it_was_submitted_with(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """`run --max-retries 3`, killed right after the first failure; `resume` (no flags) retries it."""
    run_id = "keepretry"
    job = _job(tmp_path, flag=False, delay=0.1)
    crash = dict(agent_env, STREAMFLOW_CRASH_AFTER="JobFailed:1")
    first = run_cli(["run", "--run-id", run_id, "--max-retries", "3", "--retry-delay", "1", "--outdir",
                     str(tmp_path / "out"), str(DATA / "pipeline.cwl"), str(job)], crash, timeout=120)
    assert first.returncode == -signal.SIGKILL, first.stderr
    submitted = _events(run_id, agent_env)[0]
    assert submitted["retry"]["max_retries"] == 3
    (tmp_path / "flag").write_text("ok")
    resumed = run_cli(["resume", run_id], agent_env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    types = [e["type"] for e in _events(run_id, agent_env)]
    assert "JobRetryScheduled" in types and "JobAbandoned" not in types


_POISON = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
inputs:
  script: {type: string, inputBinding: {position: 1}}
outputs: []
"""


def test_a_task_that_kills_its_worker_ends_as_a_failed_job(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """A tool that kills the agent running it is delivered STREAMFLOW_MAX_DELIVER times, then fails the run
    with the reason instead of being redelivered forever."""
    run_id = "poison1"
    pidfile = tmp_path / "agent.pid"
    (tmp_path / "poison.cwl").write_text(_POISON)
    (tmp_path / "job.json").write_text(json.dumps({"script": f"kill -9 $(cat {pidfile}); sleep 30"}))
    env = dict(agent_env, STREAMFLOW_ACK_WAIT="1", STREAMFLOW_MAX_DELIVER="2")
    runner = _popen(["run", "--run-id", run_id, "--workers", "0", "--outdir", str(tmp_path / "out"),
                     str(tmp_path / "poison.cwl"), str(tmp_path / "job.json")], env)
    agents: list[subprocess.Popen[str]] = []
    try:
        deadline = time.monotonic() + 90
        while runner.poll() is None:
            assert time.monotonic() < deadline, "the poison task was redelivered without end"
            if not agents or agents[-1].poll() is not None:
                agent = _popen(["agent", "--workers", "1"], env)
                pidfile.write_text(str(agent.pid))
                agents.append(agent)
            time.sleep(0.2)
        _, err = runner.communicate()
        assert runner.returncode == 1, err
        assert "poison task" in err
    finally:
        _kill(runner)
        for agent in agents:
            _kill(agent)
    events = _events(run_id, agent_env)
    failed = [e for e in events if e["type"] == "JobFailed"]
    assert len(failed) == 1 and failed[0]["error_type"] == "PoisonTask"
    assert sum(e["type"] == "JobStarted" for e in events) == 2


_SLEEPER = """cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sleep]
inputs:
  seconds: {type: string, inputBinding: {position: 1}}
outputs: []
"""


def test_a_process_whose_run_ends_finishes_the_job_it_borrowed(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """Run A (workers) ends while running a job of run B (no workers of its own): A finishes B's job
    before leaving instead of killing it; the job starts once."""
    (tmp_path / "sleep.cwl").write_text(_SLEEPER)
    (tmp_path / "short.json").write_text(json.dumps({"seconds": "2"}))
    (tmp_path / "long.json").write_text(json.dumps({"seconds": "5"}))
    a = _popen(["run", "--run-id", "borrowA", "--workers", "2", "--outdir", str(tmp_path / "a"),
                str(tmp_path / "sleep.cwl"), str(tmp_path / "short.json")], agent_env)
    try:
        _wait_for("borrowA", agent_env, "JobStarted")
        b = run_cli(["run", "--run-id", "borrowB", "--workers", "0", "--outdir", str(tmp_path / "b"),
                     str(tmp_path / "sleep.cwl"), str(tmp_path / "long.json")], agent_env, timeout=60)
        assert b.returncode == 0, b.stderr
        a.communicate(timeout=60)
        assert a.returncode == 0
    finally:
        _kill(a)
    events = _events("borrowB", agent_env)
    assert sum(e["type"] == "JobStarted" for e in events) == 1
