"""The runs index's start-up from its cache, the runs SSE stream after connect, events pages
read from a stream position, and a wildcard ``--host``: against the session's nats-server and
the ``streamflow ui`` subprocess of :mod:`tests.ui.conftest`."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from events.log import EventLog, run_subject
from events.schema import (
    JobCompleted,
    JobRequested,
    JobStarted,
    RunCompleted,
    RunStarted,
    RunSubmitted,
    TokenEmitted,
)
from streamflow.runs.events import EventFilter, read_page
from streamflow.ui.index import RunsIndex
from streamflow.ui.runcache import CachedRun, RunCache
from tests.conftest import run_cli
from tests.ui.conftest import UIServer, start_ui, stop_ui

_counter = iter(range(1_000_000))


def _id(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}y{next(_counter)}"


async def _run(log_: EventLog, run_id: str, jobs: int, *, finish: bool = True) -> None:
    """Append a synthetic run of ``jobs`` completed jobs (finished unless ``finish`` is False)."""
    await log_.append(run_id, "wf", None, RunSubmitted(name=f"idx-{run_id}", workflow="w.cwl",
                                                       steps={"s1": "/work"}), producer="t", key="submitted")
    await log_.append(run_id, "wf", None, RunStarted(), producer="t", key="started")
    for j in range(jobs):
        job = f"s1-{j}"
        await log_.append(run_id, "step", "s1", JobRequested(job=job, step="s1", tag=str(j)), producer="t", key=job)
        await log_.append(run_id, "job", job, JobStarted(job=job), producer="t", key="start")
        await log_.append(run_id, "job", job, JobCompleted(job=job), producer="t", key="done")
    if finish:
        await log_.append(run_id, "wf", None, RunCompleted(outputs={}), producer="t", key="final")


def _jobs(index: RunsIndex, run_id: str) -> dict[str, int]:
    rows = [r for r in index.rows(text=run_id) if r["run_id"] == run_id]
    assert len(rows) == 1, rows
    return dict(rows[0]["jobs"])


async def _eventually(check: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


@pytest.fixture
async def cache(event_log: EventLog) -> AsyncIterator[RunCache]:
    """A private counts cache (its bucket deleted afterwards)."""
    bucket = _id("sf_ui_test_")
    cache = RunCache(event_log.js, bucket)
    assert await cache.open()
    try:
        yield cache
    finally:
        await event_log.js.delete_key_value(bucket)


async def test_runs_index_starts_from_its_cache(event_log: EventLog, cache: RunCache) -> None:
    """A second start trusts entries folded to the run's last event, refolds stale and
    missing ones, refolds a cached run when a job event of it arrives, and caches the counts
    of a run that settled."""
    trusted, stale, missing, live = (_id(p) for p in ("trusted", "stale", "missing", "live"))
    for run_id in (trusted, stale, missing):
        await _run(event_log, run_id, 3)
    await _run(event_log, live, 2, finish=False)
    first = RunsIndex(event_log, cache=cache, bulk_over=0)  # one pass over the log for the misses
    first.start()
    try:
        await first.wait_ready()
        expected = _jobs(first, trusted)
        assert expected["completed"] == 3 and expected["requested"] == 3 and expected["running"] == 0
        assert _jobs(first, live)["completed"] == 2 and first.rows(text=live)[0]["status"] == "RUNNING"
    finally:
        await first.stop()
    entry = await cache.get(trusted)
    last = await event_log.last(run_subject(trusted))
    assert entry is not None and last is not None and entry.seq == last[0] and entry.jobs == expected
    # Tamper: a trusted entry is believed (so it was not refolded), a stale one is not.
    await cache.put(trusted, CachedRun(seq=entry.seq, jobs={**entry.jobs, "completed": 99}))
    await cache.put(stale, CachedRun(seq=entry.seq - 1, jobs={**entry.jobs, "completed": 77}))
    assert cache._kv is not None
    await cache._kv.delete(missing)

    second = RunsIndex(event_log, cache=cache, interval=0.05, settle=0.5, persist_after=0.1)
    second.start()
    try:
        await second.wait_ready()
        assert _jobs(second, trusted)["completed"] == 99
        assert _jobs(second, stale) == expected and _jobs(second, missing) == expected
        assert second.runs[trusted].fold is None and second.runs[stale].fold is not None
        sub = second.subscribe()
        # A job event of a run known by its cached counts: refolded from the log.
        await event_log.append(trusted, "step", "s1", JobRequested(job="s1-9", step="s1", tag="9"), producer="t",
                               key="s1-9")
        await _eventually(lambda: _jobs(second, trusted)["requested"] == 4)
        assert _jobs(second, trusted)["completed"] == 3 and _jobs(second, trusted)["waiting"] == 1
        assert not sub.queue.empty()  # the list was pushed
        # A new run is followed from its first event; quiet for ``settle`` s, its fold goes.
        new = _id("new")
        await _run(event_log, new, 2)
        await _eventually(lambda: bool(second.rows(text=new)) and _jobs(second, new)["completed"] == 2)
        await _eventually(lambda: second.runs[new].fold is None)
        last = await event_log.last(run_subject(new))
        assert last is not None
        await _eventually(lambda: second.runs[new].persisted == last[0])
        cached = await cache.get(new)
        assert cached is not None and cached.seq == last[0] and cached.jobs == _jobs(second, new)
    finally:
        await second.stop()


async def test_runs_stream_pushes_a_new_run(event_log: EventLog, ui_server: UIServer) -> None:
    """After the first message, a run submitted later appears, then its progress."""
    run_id = _id("sse")
    async with httpx.AsyncClient(base_url=ui_server.base_url, headers=ui_server.headers, timeout=30) as client, \
            client.stream("GET", "/api/runs/stream") as r:
        lines = r.aiter_lines()

        async def next_runs() -> list[dict[str, Any]]:
            event = ""
            async for line in lines:
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "runs":
                    return list(json.loads(line[6:])["runs"])
            raise AssertionError("the stream ended")

        first = await asyncio.wait_for(next_runs(), 30)
        assert run_id not in {row["run_id"] for row in first}
        await event_log.append(run_id, "wf", None, RunSubmitted(name="sse-run", workflow="w.cwl",
                                                                steps={"s1": "/work"}),
                               producer="t", key="submitted")

        async def row_of() -> dict[str, Any]:
            while True:
                rows = {row["run_id"]: row for row in await next_runs()}
                if run_id in rows:
                    return rows[run_id]

        row = await asyncio.wait_for(row_of(), 20)
        assert row["status"] == "SUBMITTED" and row["name"] == "sse-run"
        await event_log.append(run_id, "wf", None, RunStarted(), producer="t", key="started")
        await event_log.append(run_id, "step", "s1", JobRequested(job="s1-0", step="s1", tag="0"), producer="t",
                               key="s1-0")

        async def started() -> dict[str, Any]:
            while True:
                row = await row_of()
                if row["status"] == "RUNNING" and row["jobs"]["requested"] == 1:
                    return row

        row = await asyncio.wait_for(started(), 20)
        assert row["jobs"]["waiting"] == 1


async def _big_run(log_: EventLog, run_id: str, events: int) -> None:
    """A run of ``events`` events after its submission: tokens on two ports, requests of s1."""
    await log_.append(run_id, "wf", None, RunSubmitted(name="paged", workflow="w.cwl",
                                                       steps={"s1": "/work", "s2": "/other"}),
                      producer="t", key="submitted")
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            if i % 10 == 0:
                await log_.append(run_id, "step", "s1", JobRequested(job=f"s1-{i}", step="s1", tag=str(i)),
                                  producer="t", key=f"s1-{i}")
            else:
                await log_.append(run_id, "port", f"p{i % 2}", TokenEmitted(tag=str(i), value=i, producer="s2"),
                                  producer="t", key=str(i))

    await asyncio.gather(*(one(i) for i in range(events)))


async def test_event_pages_read_from_a_stream_position(event_log: EventLog, ui_server: UIServer) -> None:
    """A late page of a 3,000-event run has the CLI's rows; reading after a known position
    reads only the page; paging from the start through ``next_since`` gives every event."""
    run_id = _id("paged")
    await _big_run(event_log, run_id, 3000)
    done = await asyncio.to_thread(run_cli, ["events", run_id, "--json"], ui_server.env)
    assert done.returncode == 0, done.stderr
    cli = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(cli) == 3001 and [e["seq"] for e in cli] == list(range(1, 3002))
    url = f"/api/runs/{run_id}/events"
    async with httpx.AsyncClient(base_url=ui_server.base_url, headers=ui_server.headers, timeout=60) as client:
        late = (await client.get(url, params={"since": 2900, "limit": 50})).json()
        assert late["events"] == cli[2900:2950] and late["next_since"] == 2950
        after = (await client.get(url, params={"since": 2950, "limit": 100})).json()  # the remembered cursor
        assert after["events"] == cli[2950:] and after["next_since"] == 3001
        assert (await client.get(url, params={"since": 3001})).json() == {"events": [], "next_since": 3001}
        typed = (await client.get(url, params={"since": 2500, "type": "JobRequested"})).json()
        assert typed["events"] == [e for e in cli[2500:] if e["type"] == "JobRequested"] and typed["events"]
        step = (await client.get(url, params={"since": 1500, "step": "/work", "limit": 20})).json()
        assert step["events"] == [e for e in cli[1500:] if e["type"] == "JobRequested"][:20]
        rows: list[dict[str, Any]] = []
        since = 0
        while True:
            page = (await client.get(url, params={"since": since, "limit": 1000})).json()
            if not page["events"]:
                break
            rows += page["events"]
            since = page["next_since"]
        assert rows == cli
    # In-process: a page after a known position reads the page, not the run before it.
    position = (2900, cli[2899]["stream_seq"])
    page = await read_page(event_log, run_id, EventFilter(since=2900), limit=50, start=position)
    assert page.scanned == 50 and [r.seq for r in page.records] == list(range(2901, 2951))
    assert [r.stream_seq for r in page.records] == [e["stream_seq"] for e in cli[2900:2950]]


def test_a_wildcard_host_accepts_any_host_and_checks_origin(ui_server: UIServer) -> None:
    proc, base, token = start_ui(ui_server.env, "--host", "0.0.0.0")
    try:
        port = base.rsplit(":", 1)[1]
        assert base == f"http://0.0.0.0:{port}"
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=auth, timeout=30) as client:
            for host in (f"127.0.0.1:{port}", f"build-host.example:{port}"):
                r = client.get("/api/session", headers={"Host": host})
                assert r.status_code == 200, (host, r.text)
            csrf = client.get("/api/session").json()["csrf"]
            url = "/api/runs/nosuchrun/cancel"
            named = {"Host": f"build-host.example:{port}", "X-SF-CSRF": csrf}
            foreign = client.post(url, json={}, headers={**named, "Origin": "http://evil.example"})
            assert foreign.status_code == 403
            own = client.post(url, json={}, headers={**named, "Origin": f"http://build-host.example:{port}"})
            assert own.status_code == 404 and own.json()["ok"] is False  # past the checks: no such run
            assert httpx.get(f"http://127.0.0.1:{port}/api/session", timeout=10).status_code == 401
    finally:
        stop_ui(proc)
