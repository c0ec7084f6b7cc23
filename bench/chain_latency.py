"""Latency of one sequential step: where an N-step chain spends its time, hop by hop.

Runs the generated N-step chain (``bench/workflows/generate.py chain N``) with
``streamflow run`` in a fresh ``STREAMFLOW_HOME``, then reads the run's events from the log
(``EventLog.read``) and measures, for every step after the first, the hops of its critical
path, each between two events of that path:

=============  ==============================================================================
hop            from -> to
=============  ==============================================================================
``token``      previous step's ``JobCompleted`` -> its output's ``TokenEmitted`` (the step
               folds the result and puts the token through the port actor)
``request``    ``TokenEmitted`` -> this step's ``JobRequested``
``schedule``   ``JobRequested`` -> ``JobScheduled`` (scheduler)
``stage``      ``JobScheduled`` -> ``InputsStaged`` (data manager)
``start``      ``InputsStaged`` -> ``JobStarted`` (task publish, worker pull, attempt
               directory, the ``JobStarted`` append)
``job``        ``JobStarted`` -> ``JobCompleted`` (the worker's CWL layer and the tool's
               process: a worker matter)
=============  ==============================================================================

Every event carries two clocks of the same machine: ``occurred_at`` (the writer's clock when
it began the append) and the server's timestamp when it stored it. A hop ``A -> B`` is
``stored(B) - stored(A)``; it splits into ``react`` = ``occurred(B) - stored(A)`` (delivery
of A to the actor, its fold and decision) and ``append`` = ``stored(B) - occurred(B)`` (the
publish and its acknowledgement... up to the store; the acknowledgement's way back is in the
next hop's ``react``).

What is counted:

* **wall per step** = ``stored(JobCompleted_k) - stored(JobCompleted_k-1)``;
* **engine per step** = ``stored(JobStarted_k) - stored(JobCompleted_k-1)``: the hops
  ``token`` to ``start``, i.e. everything the actors, the bus and the work queue do between
  one job's recorded end and the next one's recorded start (the worker's pull and its
  ``JobStarted`` append included; the worker's own time around the tool, ``job``, excluded);
* **job** = ``JobStarted -> JobCompleted``; ``duration`` = the worker's own measure of the
  attempt (``JobCompleted.duration``: from the attempt's start to its result, before the
  append).

Also printed: the whole run's wall and the CPU (user + system) of the process tree
(``wait4``: the engine, the ``nats-server`` it reaps, the jobs).

Usage::

    python bench/chain_latency.py                      # 100 steps, once
    python bench/chain_latency.py --n 100 --repeat 3 --json
    python bench/chain_latency.py --src /tmp/before    # another tree (PYTHONPATH), same venv
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "workflows"))
sys.path.insert(0, str(ROOT))

from generate import expected_outputs, generate  # noqa: E402

HOPS = ("token", "request", "schedule", "stage", "start", "job")
_HOP_EVENTS = {  # hop -> (from, to) as keys of a step's events
    "token": ("prev_completed", "token"),
    "request": ("token", "JobRequested"),
    "schedule": ("JobRequested", "JobScheduled"),
    "stage": ("JobScheduled", "InputsStaged"),
    "start": ("InputsStaged", "JobStarted"),
    "job": ("JobStarted", "JobCompleted"),
}


async def _read_events(home: Path, run_id: str) -> list[dict[str, Any]]:
    """Every event of the run: type, subject id, job, stored and occurred times (seconds)."""
    os.environ["STREAMFLOW_HOME"] = str(home)
    import logging

    import structlog

    # Quiet: the bus client's debug lines would otherwise go to stdout (breaking --json).
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    from events.codec import event_type
    from events.log import EventLog
    from streamflow.bus import open_bus

    out: list[dict[str, Any]] = []
    async with open_bus() as nc:
        log_ = EventLog(nc)
        await log_.setup()
        async for record in log_.read(run_id):
            body = record.body
            out.append({
                "type": event_type(body),
                "aggregate": record.aggregate,
                "id": record.agg_id,
                "job": getattr(body, "job", None),
                "stored": record.time,
                "occurred": record.envelope.occurred_at / 1e9,
                "duration": getattr(body, "duration", None),
            })
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values: list[float]) -> dict[str, float]:
    """Median, p90, mean and sum, in milliseconds."""
    ms = [v * 1000 for v in values]
    return {"median": round(statistics.median(ms), 3) if ms else float("nan"),
            "p90": round(_pct(ms, 0.9), 3), "mean": round(statistics.fmean(ms), 3) if ms else float("nan"),
            "sum": round(sum(ms), 1)}


def analyse(events: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """Per-step hops of a chain's critical path (steps 2..n), summarised."""
    per_job: dict[str, dict[str, dict[str, Any]]] = {}
    for ev in events:
        job = ev["job"]
        if ev["type"] == "TokenEmitted":
            if job:
                per_job.setdefault(job, {})["token"] = ev
            continue
        if job and ev["type"] in ("JobRequested", "JobScheduled", "InputsStaged", "JobStarted", "JobCompleted"):
            per_job.setdefault(job, {}).setdefault(ev["type"], ev)
    hops: dict[str, list[float]] = {h: [] for h in HOPS}
    reacts: dict[str, list[float]] = {h: [] for h in HOPS}
    appends: dict[str, list[float]] = {h: [] for h in HOPS}
    wall: list[float] = []
    engine: list[float] = []
    durations: list[float] = []
    for k in range(2, n + 1):
        prev, cur = per_job.get(f"s{k - 1}-0", {}), per_job.get(f"s{k}-0", {})
        if "JobCompleted" not in prev or "JobCompleted" not in cur or "token" not in prev:
            continue
        points = dict(cur)
        points["prev_completed"] = prev["JobCompleted"]
        points["token"] = prev["token"]
        for hop, (a, b) in _HOP_EVENTS.items():
            if a in points and b in points:
                hops[hop].append(points[b]["stored"] - points[a]["stored"])
                reacts[hop].append(points[b]["occurred"] - points[a]["stored"])
                appends[hop].append(points[b]["stored"] - points[b]["occurred"])
        wall.append(cur["JobCompleted"]["stored"] - prev["JobCompleted"]["stored"])
        if "JobStarted" in cur:
            engine.append(cur["JobStarted"]["stored"] - prev["JobCompleted"]["stored"])
        if cur["JobCompleted"]["duration"] is not None:
            durations.append(cur["JobCompleted"]["duration"])
    first = min((e["stored"] for e in events), default=0.0)
    last = max((e["stored"] for e in events), default=0.0)
    return {
        "steps_measured": len(wall),
        "events": len(events),
        "events_per_step": round(len(events) / n, 2) if n else 0,
        "event_span_s": round(last - first, 3),
        "wall_per_step_ms": _summary(wall),
        "engine_per_step_ms": _summary(engine),
        "job_duration_ms": _summary(durations),
        "hops_ms": {h: _summary(v) for h, v in hops.items()},
        "react_ms": {h: _summary(v) for h, v in reacts.items()},
        "append_ms": {h: _summary(v) for h, v in appends.items()},
    }


def run_once(n: int, src: Path | None, keep: bool) -> dict[str, Any]:
    """One ``streamflow run`` of the chain in a fresh home; its figures."""
    tmp = Path(tempfile.mkdtemp(prefix="sf-chain-"))
    try:
        wf, job = generate("chain", n, tmp / "wf")
        home = tmp / "home"
        run_id = "r" + uuid.uuid4().hex[:12]
        env = dict(os.environ, STREAMFLOW_HOME=str(home))
        if src is not None:
            env["PYTHONPATH"] = str(src) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        cmd = [sys.executable, "-m", "streamflow", "run", str(wf), str(job), "--outdir", str(tmp / "out"),
               "--workdir", str(tmp / "work"), "--run-id", run_id, "--quiet"]
        began = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, cwd=src or tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - began
        stdout = proc.stdout.read().decode() if proc.stdout else ""
        stderr = proc.stderr.read().decode() if proc.stderr else ""
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise SystemExit(f"streamflow run failed ({code}): {stderr.strip()[-600:]}")
        ok = json.loads(stdout) == expected_outputs("chain", n)
        events = asyncio.run(_read_events(home, run_id))
        result = analyse(events, n)
        result.update(wall_s=round(wall, 3), cpu_s=round(usage.ru_utime + usage.ru_stime, 3), ok=ok,
                      run_id=run_id)
        return result
    finally:
        if keep:
            print(f"# kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _table(result: dict[str, Any]) -> str:
    lines = [f"wall {result['wall_s']:.2f} s, cpu {result['cpu_s']:.2f} s (tree), event span "
             f"{result['event_span_s']:.2f} s, {result['events']} events "
             f"({result['events_per_step']}/step), outputs {'ok' if result['ok'] else 'WRONG'}",
             f"{'per step (ms)':<22}{'median':>9}{'p90':>9}{'mean':>9}{'react med':>11}{'append med':>12}"]
    for hop in HOPS:
        s, r, a = result["hops_ms"][hop], result["react_ms"][hop], result["append_ms"][hop]
        lines.append(f"  {hop:<20}{s['median']:>9.2f}{s['p90']:>9.2f}{s['mean']:>9.2f}"
                     f"{r['median']:>11.2f}{a['median']:>12.2f}")
    for name, key in (("engine (token..start)", "engine_per_step_ms"), ("wall per step", "wall_per_step_ms"),
                      ("job duration field", "job_duration_ms")):
        s = result[key]
        lines.append(f"  {name:<20}{s['median']:>9.2f}{s['p90']:>9.2f}{s['mean']:>9.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100, help="steps in the chain (default 100)")
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    parser.add_argument("--src", type=Path, help="run the engine from this source tree (PYTHONPATH)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per run")
    parser.add_argument("--keep", action="store_true", help="keep each run's directory")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n must be at least 2")
    for rep in range(args.repeat):
        result = run_once(args.n, args.src.resolve() if args.src else None, args.keep)
        result.update(n=args.n, repeat=rep, src=str(args.src or ROOT),
                      load=round(os.getloadavg()[0], 2), at=time.strftime("%H:%M:%S", time.gmtime()))
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(f"# chain:{args.n} #{rep} src={result['src']} load={result['load']} at {result['at']} UTC")
            print(_table(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
