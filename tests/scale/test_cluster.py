"""A 3-node loopback JetStream cluster: R3 streams, and a run that survives losing the stream leader."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster import AgentProcess, NatsCluster, wait_stream_leader, write_scatter_workflow
from nats.js import api

from events.lease import LEASE_BUCKET
from events.log import EVENTS_STREAM, TASKS_STREAM, EventLog, Record
from events.schema import JobCompleted, JobStarted, RunCompleted, RunStarted, TokenEmitted
from streamflow.bus import connect

pytestmark = pytest.mark.slow

# ``streamflow run`` creates its streams with EventLog's default replicas (1), and setup()
# *updates* an existing stream to that config, scaling an R3 stream down to R1. Until the
# CLI takes a replication setting (see docs/deploy.md), the run under test gets replicas=3
# as EventLog's default.
_CLI_R3 = (
    "import sys, events.log as l; l.EventLog.__init__.__kwdefaults__['replicas'] = 3; "
    "from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.fixture
def nats_cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """A fresh 3-node JetStream cluster with token auth and ``sync_interval: always``."""
    cluster = NatsCluster(tmp_path / "cluster")
    begin = time.monotonic()
    cluster.start()
    print(f"\ncluster ready in {time.monotonic() - begin:.2f}s (meta leader {cluster.meta_leader()})")
    try:
        yield cluster
    finally:
        cluster.stop()


async def _log(cluster: NatsCluster, replicas: int = 3) -> EventLog:
    nc = await connect(cluster.options())
    return EventLog(nc, replicas=replicas)


async def _setup_r3(cluster: NatsCluster) -> None:
    """Provision what an operator provisions: R3 log streams and an R3 run-lease bucket."""
    log = await _log(cluster)
    try:
        deadline = time.monotonic() + 30
        while True:  # right after the meta leader is elected, stream creation may still be refused
            try:
                await log.setup()
                await log.js.create_key_value(api.KeyValueConfig(bucket=LEASE_BUCKET, history=1, replicas=3))
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await log.nc.close()


async def test_replicated_streams_are_created(nats_cluster: NatsCluster) -> None:
    """``EventLog(replicas=3).setup()`` creates SF_EVENTS and SF_TASKS as R3 streams with a leader and two peers."""
    await _setup_r3(nats_cluster)
    log = await _log(nats_cluster)
    try:
        for stream in (EVENTS_STREAM, TASKS_STREAM):
            await wait_stream_leader(nats_cluster.options(), stream)
            info = await log.js.stream_info(stream)
            assert info.config.num_replicas == 3
            assert info.cluster is not None
            assert len(info.cluster.replicas or []) == 2
    finally:
        await log.nc.close()


async def test_default_setup_keeps_replicated_streams(nats_cluster: NatsCluster) -> None:
    """A client with default settings (``streamflow run``, ``events``...) must not scale R3 streams down."""
    await _setup_r3(nats_cluster)
    log = await _log(nats_cluster, replicas=1)
    try:
        await log.setup()
        info = await log.js.stream_info(EVENTS_STREAM)
        assert info.config.num_replicas == 3
    finally:
        await log.nc.close()


async def _records(cluster: NatsCluster, run_id: str) -> list[Record]:
    log = await _log(cluster)
    try:
        return [r async for r in log.read(run_id)]
    finally:
        await log.nc.close()


async def _count_completed(cluster: NatsCluster, run_id: str) -> int:
    log = await _log(cluster)
    try:
        return await log.count(f"sf.ev.{run_id}.job.*") // 2
    except Exception:
        return 0
    finally:
        await log.nc.close()


async def _probe_appends(cluster: NatsCluster, stop: asyncio.Event, acks: list[float]) -> None:
    """Append to SF_EVENTS continuously (a probe run), recording when each append is acknowledged."""
    log = await _log(cluster)
    try:
        i = 0
        while not stop.is_set():
            i += 1
            await log.append("stallprobe", "wf", None, RunStarted(host="probe", pid=i), producer="probe", key=f"p{i}")
            acks.append(time.monotonic())
            await asyncio.sleep(0.02)
    finally:
        await log.nc.close()


def _check_log(records: list[Record], jobs: int) -> None:
    """No duplicate event ids; per aggregate, ordered stream sequences and complete lifecycles."""
    ids = Counter(r.envelope.event_id for r in records)
    assert [eid for eid, n in ids.items() if n > 1] == []
    by_subject: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        by_subject[record.subject].append(record)
    for subject, items in by_subject.items():
        seqs = [r.stream_seq for r in items]
        assert seqs == sorted(set(seqs)), subject
    job_subjects = {s: items for s, items in by_subject.items() if s.split(".")[3] == "job"}
    assert len(job_subjects) == jobs
    for subject, items in job_subjects.items():
        kinds = [type(r.body) for r in items]
        # Every attempt delivery starts, and the job completes once, last.
        assert kinds[0] is JobStarted, subject
        assert kinds.count(JobCompleted) == 1 and kinds[-1] is JobCompleted, (subject, kinds)
    tokens: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if isinstance(record.body, TokenEmitted):
            tokens[record.subject].append(record.body.tag)
    for subject, tags in tokens.items():
        assert len(tags) == len(set(tags)), subject


async def test_run_survives_stream_leader_kill(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    """SIGKILL on the SF_EVENTS leader mid-run (jobs on 2 agents): the run completes; no duplicate, no gap in its log."""
    await _setup_r3(nats_cluster)
    leader = await wait_stream_leader(nats_cluster.options(), EVENTS_STREAM)
    jobs = 30
    workflow, job = write_scatter_workflow(tmp_path / "wf", jobs, delay=0.3)
    env = dict(os.environ, STREAMFLOW_HOME=str(tmp_path / "home"), TMPDIR=str(tmp_path),
               STREAMFLOW_NATS_TOKEN=nats_cluster.token, STREAMFLOW_NATS_URL=",".join(nats_cluster.urls),
               STREAMFLOW_ACK_WAIT="3")
    agents = [AgentProcess.start(name, env, tmp_path, "--workers", "1") for name in ("a", "b")]
    for agent in agents:
        await asyncio.to_thread(agent.wait_started)
    err = (tmp_path / "run.err").open("wb")
    out = (tmp_path / "run.out").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-c", _CLI_R3, "run", str(workflow), str(job), "--run-id", "leaderkill", "--workers", "0",
         "--outdir", str(tmp_path / "out"), "--nats", ",".join(nats_cluster.urls)],
        env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
    err.close()
    out.close()
    stop = asyncio.Event()
    acks: list[float] = []
    try:
        deadline = time.monotonic() + 60
        while await _count_completed(nats_cluster, "leaderkill") < 4:
            assert run.poll() is None, (tmp_path / "run.err").read_text()
            assert time.monotonic() < deadline, "the run made no progress"
            await asyncio.sleep(0.1)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(_probe_appends(nats_cluster, stop, acks))
            while len(acks) < 5:
                await asyncio.sleep(0.02)
            leader = await wait_stream_leader(nats_cluster.options(), EVENTS_STREAM)
            lease_leader = await wait_stream_leader(nats_cluster.options(), f"KV_{LEASE_BUCKET}")
            killed_at = time.monotonic()
            nats_cluster.kill(leader)
            done_before = len(acks)
            while len([t for t in acks if t > killed_at]) < 5:
                await asyncio.sleep(0.05)
                assert time.monotonic() - killed_at < 60, "appends did not resume within 60 s"
            stop.set()
        after = [t for t in acks[done_before - 1:] if t > killed_at]
        stall = after[0] - killed_at
        new_leader = await wait_stream_leader(nats_cluster.options(), EVENTS_STREAM)
        print(f"\nSF_EVENTS leader {leader} killed (lease leader {lease_leader}); appends stalled {stall:.2f}s; "
              f"new leader {new_leader}")
        code = await asyncio.to_thread(run.wait, 180)
        stderr = (tmp_path / "run.err").read_text()
        assert code == 0, stderr
        outputs: dict[str, Any] = json.loads((tmp_path / "run.out").read_text())
        assert outputs["squares"] == [n * n for n in range(jobs)]
        records = await _records(nats_cluster, "leaderkill")
        assert any(isinstance(r.body, RunCompleted) for r in records)
        _check_log(records, jobs)
        assert {s.worker for r in records if isinstance(s := r.body, JobStarted)} == {"a", "b"}
        for agent in agents:
            agent.signal(signal.SIGTERM)
        assert [await asyncio.to_thread(a.process.wait, 30) for a in agents] == [0, 0]
    finally:
        for agent in agents:
            agent.stop()
        stop.set()
        if run.poll() is None:
            run.kill()
            run.wait()
