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
import resource
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


async def read_all(log_: EventLog) -> tuple[list[Record], float, float]:
    """Read the whole run; return the records, the seconds it took and this process's CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    records = [record async for record in log_.read(RUN_ID)]
    return records, time.perf_counter() - start, time.process_time() - cpu


def fold(records: list[Record]) -> tuple[RunSummary, float]:
    """Fold records into a RunSummary; return it and the seconds it took."""
    start = time.perf_counter()
    summary = RunSummary(run_id=RUN_ID)
    for record in records:
        summary.apply(record)
    return summary, time.perf_counter() - start


async def read_and_fold(log_: EventLog) -> tuple[RunSummary, float, float]:
    """``streamflow status``: fold while reading (seconds, and this process's CPU seconds)."""
    start, cpu = time.perf_counter(), time.process_time()
    summary = RunSummary(run_id=RUN_ID)
    async for record in log_.read(RUN_ID):
        summary.apply(record)
    return summary, time.perf_counter() - start, time.process_time() - cpu


def _server_cpu(server: EmbeddedServer) -> float:
    """CPU seconds (user + system) the private nats-server has used so far (0 if unknown)."""
    try:
        fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError, IndexError, ValueError):
        return 0.0


def _rss_mib() -> float:
    """Peak RSS of this process so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def bench(args: argparse.Namespace, store: Path) -> dict[str, Any]:
    """Run the whole benchmark against a private server; return the measurements."""
    server = EmbeddedServer(store / "jetstream")
    await asyncio.to_thread(server.start)
    marker = store / "populated.json"
    try:
        nc = await connect(server.options())
        try:
            log_ = EventLog(nc)
            await log_.setup()
            if marker.exists():  # --store DIR of an earlier run: the same log again
                kept = json.loads(marker.read_text())
                if [kept["events"], kept["ports"], kept["value_bytes"]] != [args.events, args.ports, args.value_bytes]:
                    raise SystemExit(f"{store} holds another log ({kept}); use another --store")
                append_s = kept["append_s"]
            else:
                append_s = await populate(log_, args.events, args.ports, args.concurrency, args.value_bytes)
                marker.write_text(json.dumps({"events": args.events, "ports": args.ports,
                                              "value_bytes": args.value_bytes, "append_s": append_s}))
            total = args.events + 2
            reads, folds, both, reads_cpu, both_cpu = [], [], [], [], []
            server_read: list[float] = []
            server_both: list[float] = []
            rss_read_fold = 0.0
            payload_bytes = 0
            for _ in range(args.repeat):
                # read+fold first: the peak RSS after the first one is what ``streamflow status`` needs
                before = _server_cpu(server)
                summary2, both_s, both_c = await read_and_fold(log_)
                server_both.append(_server_cpu(server) - before)
                if summary2.events != total:
                    raise SystemExit(f"read+fold saw {summary2.events} events, expected {total}")
                del summary2
                rss_read_fold = rss_read_fold or _rss_mib()
                before = _server_cpu(server)
                records, read_s, read_c = await read_all(log_)
                server_read.append(_server_cpu(server) - before)
                if len(records) != total:
                    raise SystemExit(f"read {len(records)} events, expected {total}")
                summary, fold_s = fold(records)
                if summary.tokens != args.events or summary.status != "COMPLETED":
                    raise SystemExit(f"bad fold: tokens={summary.tokens} status={summary.status}")
                reads.append(read_s)
                reads_cpu.append(read_c)
                folds.append(fold_s)
                both.append(both_s)
                both_cpu.append(both_c)
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
        "read_cpu_s": [round(x, 3) for x in reads_cpu], "read_fold_cpu_s": [round(x, 3) for x in both_cpu],
        "read_server_cpu_s": [round(x, 2) for x in server_read],
        "read_fold_server_cpu_s": [round(x, 2) for x in server_both],
        "rss_read_fold_mib": round(rss_read_fold, 1), "rss_peak_mib": round(_rss_mib(), 1),
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
    parser.add_argument("--store", type=Path, metavar="DIR",
                        help="keep the server's store in DIR, and reuse the log already there (same --events, "
                             "--ports, --value-bytes): compare two trees on one log")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = datetime.now(UTC)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="sfbench-replay-") as tmp:
        store = args.store.resolve() if args.store else Path(tmp)
        store.mkdir(parents=True, exist_ok=True)
        result = asyncio.run(bench(args, store))
    meta = {"started": started.isoformat(timespec="seconds"), "host": platform.node(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "load_at_start": load_start, "load_at_end": os.getloadavg()}
    print("| measure | seconds | events/s | client CPU s | server CPU s |")
    print("|---|---|---|---|---|")
    print(f"| append ({args.events} TokenEmitted, {args.concurrency} in flight) | {result['append_s']:.2f} "
          f"| {result['append_eps']:,} | | |")
    for name, key in (("read (EventLog.read)", "read"), ("fold (RunSummary.apply)", "fold"),
                      ("read + fold", "read_fold")):
        secs = statistics.median(result[f"{key}_s"])
        cpu, server_cpu = result.get(f"{key}_cpu_s"), result.get(f"{key}_server_cpu_s")
        print(f"| {name} | {secs:.2f} | {result[f'{key}_eps']:,} | {statistics.median(cpu) if cpu else ''} "
              f"| {statistics.median(server_cpu) if server_cpu else ''} |")
    print(f"| peak RSS after the first read + fold / at the end (MiB) | {result['rss_read_fold_mib']} / "
          f"{result['rss_peak_mib']} | | | |")
    print(f"# {result['events']} events, {result['stream_bytes'] / 2**20:.1f} MiB in the stream; "
          f"load {load_start[0]:.2f} -> {os.getloadavg()[0]:.2f}", file=sys.stderr)
    out = args.output or RESULTS / f"replay-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "result": result}, indent=2) + "\n")
    print(f"# results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
