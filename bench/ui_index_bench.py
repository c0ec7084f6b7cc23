"""Measure the start-up of the UI's runs index (:class:`streamflow.ui.index.RunsIndex`).

Starts a private ``nats-server``, appends ``--runs`` synthetic finished runs of ``--jobs``
jobs each (``RunSubmitted``, ``RunStarted``, per job ``JobRequested``/``JobStarted``/
``JobCompleted``, ``RunCompleted``: ``3 * jobs + 3`` events a run) plus ``--live`` runs still
running, then starts a runs index ``--repeat`` times and reports, for each start, the seconds
until it is ready (wall), the CPU seconds of this process and of the nats-server, and checks
the rows (every run listed, its job counts right). The first start may fill the index's
cache (when it has one); the next ones read it.

Usage::

    python bench/ui_index_bench.py --runs 1000 --jobs 33

Results: a table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from events.log import EventLog
from events.schema import JobCompleted, JobRequested, JobStarted, RunCompleted, RunStarted, RunSubmitted
from streamflow.bus import EmbeddedServer, connect
from streamflow.ui.index import RunsIndex
from streamflow.ui.runcache import RunCache


def _server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def populate(log_: EventLog, runs: int, jobs: int, live: int, concurrency: int) -> int:
    """Append the synthetic runs; return how many events were appended."""
    gate = asyncio.Semaphore(concurrency)
    count = 0

    async def append(run: str, aggregate: str, agg_id: str | None, body: Any, key: str) -> None:
        nonlocal count
        async with gate:
            await log_.append(run, aggregate, agg_id, body, producer="bench", key=key)
            count += 1

    async def one(r: int) -> None:
        run = f"bench{r:06d}"
        await append(run, "wf", None, RunSubmitted(name=f"bench-{r}", workflow="bench.cwl", steps={"s1": "/work"}),
                     "submitted")
        await append(run, "wf", None, RunStarted(), "started")
        for j in range(jobs):
            job = f"s1-{j}"
            await append(run, "step", "s1", JobRequested(job=job, step="s1", tag=str(j)), job)
            await append(run, "job", job, JobStarted(job=job), "start")
            await append(run, "job", job, JobCompleted(job=job), "done")
        if r < runs:
            await append(run, "wf", None, RunCompleted(outputs={}), "final")

    batch = 32
    total = runs + live
    for first in range(0, total, batch):
        async with asyncio.TaskGroup() as group:
            for r in range(first, min(total, first + batch)):
                group.create_task(one(r))
    return count


async def start_index(log_: EventLog, server_pid: int, runs: int, jobs: int, live: int,
                      cache: bool) -> dict[str, float]:
    """Start an index, wait until ready, check its rows, stop it; return the costs."""
    cpu0, srv0, wall0 = time.process_time(), _server_cpu(server_pid), time.perf_counter()
    index = RunsIndex(log_, cache=RunCache(log_.js) if cache else None)
    index.start()
    await index.wait_ready(timeout=600)
    wall = time.perf_counter() - wall0
    cpu, srv = time.process_time() - cpu0, _server_cpu(server_pid) - srv0
    rows = index.rows(text="bench")
    folded = index.folded
    await index.stop()
    if len(rows) != runs + live:
        raise SystemExit(f"{len(rows)} rows, expected {runs + live}")
    for row in rows:
        done = row["status"] == "COMPLETED"
        if row["jobs"]["completed"] != jobs or done != (int(row["run_id"][5:]) < runs):
            raise SystemExit(f"bad row {row}")
    return {"wall": wall, "cpu": cpu, "server_cpu": srv, "folded": folded}


async def bench(args: argparse.Namespace, store: Path) -> None:
    server = EmbeddedServer(store / "jetstream")
    await asyncio.to_thread(server.start)
    try:
        assert server.process is not None
        nc = await connect(server.options())
        try:
            log_ = EventLog(nc)
            await log_.setup()
            t0 = time.perf_counter()
            events = await populate(log_, args.runs, args.jobs, args.live, args.concurrency)
            print(f"# {events} events in {args.runs} finished + {args.live} live runs, appended in "
                  f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
            print("| start | runs folded | ready (s, wall) | CPU of this process (s) | CPU of nats-server (s) |")
            print("|---|---|---|---|---|")
            for i in range(args.repeat):
                cost = await start_index(log_, server.process.pid, args.runs, args.jobs, args.live, not args.no_cache)
                print(f"| {i + 1} | {cost['folded']} | {cost['wall']:.2f} | {cost['cpu']:.2f} | "
                      f"{cost['server_cpu']:.2f} |")
        finally:
            await nc.drain()
    finally:
        await asyncio.to_thread(server.stop)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its table."""
    parser = argparse.ArgumentParser(description="Measure the start-up of the UI's runs index.")
    parser.add_argument("--runs", type=int, default=1000, help="finished runs (default: 1000)")
    parser.add_argument("--jobs", type=int, default=33, help="jobs per run (default: 33, ~100 events a run)")
    parser.add_argument("--live", type=int, default=2, help="runs still running (default: 2)")
    parser.add_argument("--concurrency", type=int, default=256, help="appends in flight (default: 256)")
    parser.add_argument("--repeat", type=int, default=3, help="index start-ups (default: 3)")
    parser.add_argument("--no-cache", action="store_true", help="start the index without its counts cache")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory(prefix="sfbench-ui-") as tmp:
        asyncio.run(bench(args, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
