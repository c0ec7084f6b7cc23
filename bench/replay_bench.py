"""Measure how fast the event log replays: ``EventLog.read`` and the ``RunSummary`` fold.

Starts a private ``nats-server`` (:class:`streamflow.bus.EmbeddedServer`, JetStream file
store in a temporary directory), appends one synthetic run — ``RunSubmitted``, then
``--events`` ``TokenEmitted`` spread over ``--ports`` port subjects, then ``RunCompleted`` —
with :meth:`EventLog.append` (concurrent, bounded by an ``asyncio.Semaphore``), and times:

* append: events/s of the concurrent appends (each one a JetStream publish + ack);
* read: events/s of ``EventLog.read(run)`` from the start (ordered consumer + decode);
* fold: events/s of ``RunSummary.apply`` over the records already in memory;
* read+fold: what ``streamflow status RUN`` does.

Usage::

    python bench/replay_bench.py                       # 100k events
    python bench/replay_bench.py --events 20000 --repeat 3

Results: a table on stdout and ``bench/results/replay-<UTC time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from events.log import EventLog, Record
from events.projections import RunSummary
from events.schema import RunCompleted, RunSubmitted, TokenEmitted
from streamflow.bus import EmbeddedServer, connect

RESULTS = Path(__file__).resolve().parent / "results"
RUN_ID = "rbench"


def _value(i: int, size: int) -> dict[str, Any]:
    """A File-like token value of roughly ``size`` bytes."""
    path = f"/data/run/out-{i:08d}.txt"
    pad = max(0, size - len(path) - 60)
    return {"class": "File", "path": path, "size": i, "checksum": "sha1$" + "0" * min(40, pad) + "x" * max(0, pad - 40)}


async def populate(log_: EventLog, events: int, ports: int, concurrency: int, value_bytes: int) -> float:
    """Append the synthetic run; return the seconds the token appends took."""
    steps = {f"s{p}": f"step{p}" for p in range(ports)}
    await log_.append(RUN_ID, "wf", None, RunSubmitted(name="replay-bench", workflow="bench", steps=steps,
                                                       ports={f"p{p}": f"port{p}" for p in range(ports)}),
                      producer="bench", key="submitted")
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        port = i % ports
        tag = f"0.{i // ports}"
        body = TokenEmitted(tag=tag, value=_value(i, value_bytes), producer=f"s{port}", job=f"s{port}-0_{i // ports}")
        try:
            await log_.append(RUN_ID, "port", f"p{port}", body, producer=f"port:p{port}", key=tag)
        finally:
            gate.release()

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i in range(events):
            # Acquired here, released by the task: bounds the tasks as well as the publishes.
            await gate.acquire()
            group.create_task(one(i))
    elapsed = time.perf_counter() - start
    await log_.append(RUN_ID, "wf", None, RunCompleted(outputs={}), producer="bench", key="completed")
    return elapsed


async def read_all(log_: EventLog) -> tuple[list[Record], float]:
    """Read the whole run; return the records and the seconds it took."""
    start = time.perf_counter()
    records = [record async for record in log_.read(RUN_ID)]
    return records, time.perf_counter() - start


def fold(records: list[Record]) -> tuple[RunSummary, float]:
    """Fold records into a RunSummary; return it and the seconds it took."""
    start = time.perf_counter()
    summary = RunSummary(run_id=RUN_ID)
    for record in records:
        summary.apply(record)
    return summary, time.perf_counter() - start


async def read_and_fold(log_: EventLog) -> tuple[RunSummary, float]:
    """``streamflow status``: fold while reading."""
    start = time.perf_counter()
    summary = RunSummary(run_id=RUN_ID)
    async for record in log_.read(RUN_ID):
        summary.apply(record)
    return summary, time.perf_counter() - start


async def bench(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    """Run the whole benchmark against a private server; return the measurements."""
    server = EmbeddedServer(store / "jetstream")
    await asyncio.to_thread(server.start)
    try:
        nc = await connect(server.options())
        try:
            log_ = EventLog(nc)
            await log_.setup()
            append_s = await populate(log_, args.events, args.ports, args.concurrency, args.value_bytes)
            total = args.events + 2
            reads, folds, both = [], [], []
            payload_bytes = 0
            for _ in range(args.repeat):
                records, read_s = await read_all(log_)
                if len(records) != total:
                    raise SystemExit(f"read {len(records)} events, expected {total}")
                summary, fold_s = fold(records)
                if summary.tokens != args.events or summary.status != "COMPLETED":
                    raise SystemExit(f"bad fold: tokens={summary.tokens} status={summary.status}")
                summary2, both_s = await read_and_fold(log_)
                if summary2.events != total:
                    raise SystemExit(f"read+fold saw {summary2.events} events, expected {total}")
                reads.append(read_s)
                folds.append(fold_s)
                both.append(both_s)
                del records
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                await read_all(log_)
                profiler.disable()
                profiler.dump_stats(args.profile)
            info = await log_.js.stream_info("SF_EVENTS")
            payload_bytes = info.state.bytes
        finally:
            await nc.drain()
    finally:
        await asyncio.to_thread(server.stop)
    return {
        "events": total, "ports": args.ports, "concurrency": args.concurrency, "value_bytes": args.value_bytes,
        "stream_bytes": payload_bytes,
        "append_s": round(append_s, 3), "append_eps": round(args.events / append_s),
        "read_s": [round(x, 3) for x in reads], "fold_s": [round(x, 3) for x in folds],
        "read_fold_s": [round(x, 3) for x in both],
        "read_eps": round(total / statistics.median(reads)),
        "fold_eps": round(total / statistics.median(folds)),
        "read_fold_eps": round(total / statistics.median(both)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the replay benchmark and print/save its results."""
    parser = argparse.ArgumentParser(description="Measure EventLog.read and RunSummary fold rates.")
    parser.add_argument("--events", type=int, default=100_000, help="TokenEmitted events to append (default: 100000)")
    parser.add_argument("--ports", type=int, default=100, help="port subjects to spread them over (default: 100)")
    parser.add_argument("--concurrency", type=int, default=256, help="appends in flight (default: 256)")
    parser.add_argument("--value-bytes", type=int, default=160, help="approximate size of each token value")
    parser.add_argument("--repeat", type=int, default=3, help="replays to time (median reported; default: 3)")
    parser.add_argument("--output", type=Path, help="the JSON results file (default: bench/results/replay-<time>.json)")
    parser.add_argument("--profile", type=Path, metavar="FILE", help="also cProfile one extra read into FILE")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sfbench-replay-") as tmp:
        result = asyncio.run(bench(args, Path(tmp)))
    meta = {"started": started.isoformat(timespec="seconds"), "host": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_at_start": load_start, "load_at_end": os.getloadavg()}
    print("| measure | seconds | events/s |")
    print("|---|---|---|")
    print(f"| append ({args.events} TokenEmitted, {args.concurrency} in flight) | {result['append_s']:.2f} "
          f"| {result['append_eps']:,} |")
    for name, key in (("read (EventLog.read)", "read"), ("fold (RunSummary.apply)", "fold"),
                      ("read + fold", "read_fold")):
        secs = statistics.median(result[f"{key}_s"])
        print(f"| {name} | {secs:.2f} | {result[f'{key}_eps']:,} |")
    print(f"# {result['events']} events, {result['stream_bytes'] / 2**20:.1f} MiB in the stream; "
          f"load {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}", file=sys.stderr)
    out = args.output or RESULTS / f"replay-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    print(f"# results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
