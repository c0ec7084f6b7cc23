"""How long ``streamflow resume`` takes to replay a large run's log and get back to work.

A scatter is run with ``streamflow run`` against a private ``nats-server`` until its log
holds ``--events`` events; the engine is then SIGKILLed (its jobs die with it) and
``streamflow resume`` is started. From the run's own events:

* **to RunResumed**: spawn of ``resume`` to its ``RunResumed`` (process start, lease takeover,
  the ``wf`` fold, the graph rebuilt);
* **replay to live**: spawn of ``resume`` to the first ``JobCompleted`` recorded after it,
  i.e. every actor has replayed its part of the log and jobs flow again;
* **total**: spawn to exit, the rest of the run included.

The figure for a log ten times larger can be projected from ``bench/replay_bench.py``'s
read+fold rate (``--events 1000000``), which measures the part of a resume that grows with
the log.

Usage::

    python bench/resume_bench.py                      # ~100,000 events
    python bench/resume_bench.py --events 20000

Results: a table on stdout and ``bench/results/resume-<UTC time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "workflows"))

from generate import expected_outputs, generate  # noqa: E402

from events.log import EVENTS_STREAM, EventLog  # noqa: E402
from events.schema import JobCompleted, RunResumed  # noqa: E402
from streamflow.bus import EmbeddedServer, connect  # noqa: E402

RESULTS = HERE / "results"
EVENTS_PER_JOB = 7  # a generous lower bound, so the scatter is long enough to reach --events


async def _stream_messages(server: EmbeddedServer) -> int:
    nc = await connect(server.options())
    try:
        js = nc.jetstream()
        try:
            info = await js.stream_info(EVENTS_STREAM)
        except Exception:  # the stream is created by the run itself
            return 0
        return int(info.state.messages)
    finally:
        await nc.close()


async def _after(server: EmbeddedServer, run_id: str, since: float) -> dict[str, Any]:
    nc = await connect(server.options())
    try:
        resumed, first_done, events = None, None, 0
        async for record in EventLog(nc).read(run_id):
            events += 1
            when = record.time or record.envelope.occurred_at / 1e9
            if isinstance(record.body, RunResumed) and resumed is None:
                resumed = when
            elif isinstance(record.body, JobCompleted) and resumed is not None and first_done is None:
                first_done = when
        return {"events": events,
                "to_resumed_s": round(resumed - since, 3) if resumed else None,
                "to_live_s": round(first_done - since, 3) if first_done else None}
    finally:
        await nc.close()


def main(argv: list[str] | None = None) -> int:
    """Run, kill, resume; print and save the figures."""
    parser = argparse.ArgumentParser(description="Time streamflow resume on a log of --events events.")
    parser.add_argument("--events", type=int, default=100_000, help="log size when the engine is killed")
    parser.add_argument("--output", type=Path, help="JSON results (default: bench/results/resume-<time>.json)")
    args = parser.parse_args(argv)
    jobs = max(10, int(args.events / EVENTS_PER_JOB * 1.15))
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="sfbench-resume-") as tmp_name:
        tmp = Path(tmp_name)
        workflow, job = generate("scatter", jobs, tmp / "wf")
        server = EmbeddedServer(tmp / "nats" / "jetstream")
        server.start()
        try:
            env = dict(os.environ, STREAMFLOW_HOME=str(tmp / "home"), STREAMFLOW_NATS_URL=server.url,
                       STREAMFLOW_NATS_TOKEN=server.token, TMPDIR=str(tmp))
            run_id = f"rresume{int(time.time())}"
            base = [sys.executable, "-m", "streamflow"]
            with (tmp / "run.log").open("wb") as err:
                run = subprocess.Popen([*base, "run", str(workflow), str(job), "--run-id", run_id, "--quiet",
                                        "--outdir", str(tmp / "out"), "--workdir", str(tmp / "work")],
                                       env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            t0 = time.perf_counter()
            while run.poll() is None and asyncio.run(_stream_messages(server)) < args.events:
                time.sleep(0.5)
            if run.poll() is not None:
                print(f"the run ended (exit {run.returncode}) before its log reached {args.events} events; "
                      f"raise --events' scatter size", file=sys.stderr)
                return 1
            run.send_signal(signal.SIGKILL)
            run.wait()
            first_phase = time.perf_counter() - t0
            logged = asyncio.run(_stream_messages(server))
            print(f"# killed the engine after {first_phase:.1f}s with {logged} events in the log", file=sys.stderr)
            spawn = time.time()
            t1 = time.perf_counter()
            with (tmp / "resume.log").open("wb") as err, (tmp / "resume.out").open("wb") as out:
                code = subprocess.run([*base, "resume", run_id, "--quiet"], env=env, stdin=subprocess.DEVNULL,
                                      stdout=out, stderr=err, check=False).returncode
            total = time.perf_counter() - t1
            figures = asyncio.run(_after(server, run_id, spawn))
        finally:
            server.stop()
        ok = code == 0 and json.loads((tmp / "resume.out").read_text()) == expected_outputs("scatter", jobs)
        if not ok:
            print((tmp / "resume.log").read_text(errors="replace")[-2000:], file=sys.stderr)
    result = {"jobs": jobs, "events_at_kill": logged, "events_total": figures["events"],
              "to_resumed_s": figures["to_resumed_s"], "to_live_s": figures["to_live_s"],
              "total_s": round(total, 2), "ok": ok}
    print("| events at kill | to RunResumed s | replay to live s | resume total s | ok |")
    print("|---|---|---|---|---|")
    print(f"| {logged:,} | {result['to_resumed_s']} | {result['to_live_s']} | {result['total_s']} | "
          f"{'yes' if ok else 'NO'} |")
    out_path = args.output or RESULTS / f"resume-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"started": started.isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                                    "load_at_end": os.getloadavg(), "result": result}, indent=2) + "\n")
    print(f"# results: {out_path}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
