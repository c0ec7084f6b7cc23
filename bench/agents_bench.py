"""Jobs per second of one run as agents are added, and where each job's CPU goes.

One private ``nats-server`` (:class:`streamflow.bus.EmbeddedServer`) serves every run. For
each agent count (default 0, 1, 2, 4; ``0`` is the plain ``streamflow run``, whose own
workers run the jobs) the same scatter runs once:

* with agents: ``N`` ``streamflow agent`` processes are started and waited for (their
  ``agent_started`` log line), then ``streamflow run --workers 0`` submits the run;
* the rate is taken from the run's own events: jobs / (last ``JobCompleted`` - first
  ``JobStarted``), so process start-up does not blur it; the wall time of the ``run``
  command is reported beside it;
* the CPU seconds of the run process (its actors: steps, ports, Scheduler, DataManager...),
  of the agents (the workers and the jobs they spawn) and of ``nats-server`` are read with
  psutil, divided by the jobs: the per-job cost of each part. These are the inputs of the
  projection printed at the end: one run's actors can sustain at most
  ``1 / engine CPU per job`` jobs/s whatever the number of agents, and the bus at most
  ``cores_of_the_bus_machine / bus CPU per job``.

Usage::

    python bench/agents_bench.py                       # 2000 jobs; 0, 1, 2, 4 agents
    python bench/agents_bench.py --jobs 500 --agents 0,1,2

Results: a table on stdout and ``bench/results/agents-<UTC time>.json`` (git-ignored).
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
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "workflows"))

from generate import expected_outputs, generate  # noqa: E402

from events.log import EventLog  # noqa: E402
from events.schema import JobCompleted, JobStarted  # noqa: E402
from streamflow.bus import EmbeddedServer, connect  # noqa: E402

RESULTS = HERE / "results"


@dataclass
class AgentsResult:
    """One run with a given number of agents."""

    agents: int
    jobs: int
    wall_s: float
    jobs_per_s: float
    engine_cpu_ms_per_job: float
    agents_cpu_ms_per_job: float
    bus_cpu_ms_per_job: float
    ok: bool
    error: str = ""


def _cpu(proc: psutil.Process, *, children: bool = False) -> float:
    """CPU seconds of ``proc`` (and, for a live process, of the children it reaped)."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return 0.0
    total = times.user + times.system
    if children:
        total += times.children_user + times.children_system
    return total


def _cli(args: list[str], env: dict[str, str], log: Path, out: Path | None = None) -> subprocess.Popen[bytes]:
    stdout = out.open("wb") if out else subprocess.DEVNULL
    with log.open("wb") as err:
        try:
            return subprocess.Popen([sys.executable, "-m", "streamflow", *args], env=env, stdin=subprocess.DEVNULL,
                                    stdout=stdout, stderr=err)
        finally:
            if out:
                stdout.close()  # type: ignore[union-attr]


def _wait_started(log: Path, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if b'"agent_started"' in log.read_bytes():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"agent did not start: {log.read_text(errors='replace')[-2000:]}")


async def _rate(server: EmbeddedServer, run_id: str) -> tuple[int, float]:
    """Completed jobs and their rate, from the run's events."""
    nc = await connect(server.options())
    try:
        first_start, last_end, done = None, None, 0
        async for record in EventLog(nc).read(run_id):
            when = record.time or record.envelope.occurred_at / 1e9
            if isinstance(record.body, JobStarted) and first_start is None:
                first_start = when
            elif isinstance(record.body, JobCompleted):
                done += 1
                last_end = when
        if first_start is None or last_end is None or last_end <= first_start:
            return done, 0.0
        return done, done / (last_end - first_start)
    finally:
        await nc.close()


def run_case(agents: int, jobs: int, workflow: Path, job: Path, server: EmbeddedServer, base: Path,
             bus_proc: psutil.Process) -> AgentsResult:
    """One run of the scatter with ``agents`` agents (0: the run's own workers)."""
    tmp = base / f"agents-{agents}"
    tmp.mkdir()
    env = dict(os.environ, STREAMFLOW_HOME=str(tmp / "home"), STREAMFLOW_NATS_URL=server.url,
               STREAMFLOW_NATS_TOKEN=server.token, TMPDIR=str(tmp))
    procs = []
    for i in range(agents):
        log = tmp / f"agent-{i}.log"
        proc = _cli(["agent", "--name", f"bench{i}", "--workers", "2", "--workdir", str(tmp / f"aw{i}")], env, log)
        procs.append(proc)
        _wait_started(log, proc)
    run_id = f"ragents{agents}x{int(time.time())}"
    bus_before = _cpu(bus_proc)
    agents_before = sum(_cpu(psutil.Process(p.pid), children=True) for p in procs)
    start = time.perf_counter()
    args = ["run", str(workflow), str(job), "--outdir", str(tmp / "out"), "--workdir", str(tmp / "work"),
            "--run-id", run_id, "--quiet"]
    if agents:
        args += ["--workers", "0"]
    run = _cli(args, env, tmp / "run.log", tmp / "run.out")
    ps_run = psutil.Process(run.pid)
    engine_cpu = 0.0
    while run.poll() is None:  # the last reading before it exits: its own CPU (and, with 0 agents, its jobs')
        engine_cpu = max(engine_cpu, _cpu(ps_run, children=True))
        time.sleep(0.1)
    wall = time.perf_counter() - start
    agents_cpu = sum(_cpu(psutil.Process(p.pid), children=True) for p in procs) - agents_before
    bus_cpu = _cpu(bus_proc) - bus_before
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    error, ok = "", False
    if run.returncode != 0:
        error = f"exit {run.returncode}: {(tmp / 'run.log').read_text(errors='replace')[-600:]}"
    else:
        ok = json.loads((tmp / "run.out").read_text()) == expected_outputs("scatter", jobs)
    done, rate = asyncio.run(_rate(server, run_id))
    per = 1000 / max(done, 1)
    return AgentsResult(agents=agents, jobs=done, wall_s=round(wall, 2), jobs_per_s=round(rate, 1),
                        engine_cpu_ms_per_job=round(engine_cpu * per, 2),
                        agents_cpu_ms_per_job=round(agents_cpu * per, 2),
                        bus_cpu_ms_per_job=round(bus_cpu * per, 2), ok=ok, error=error)


def print_table(results: list[AgentsResult]) -> None:
    """The results as a Markdown table, then the projection."""
    print("| agents | jobs | wall s | jobs/s (events) | engine CPU ms/job | agents CPU ms/job | bus CPU ms/job | ok |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        label = "0 (run's own workers)" if r.agents == 0 else str(r.agents)
        print(f"| {label} | {r.jobs} | {r.wall_s:.1f} | {r.jobs_per_s:.1f} | {r.engine_cpu_ms_per_job:.2f} | "
              f"{r.agents_cpu_ms_per_job:.2f} | {r.bus_cpu_ms_per_job:.2f} | {'yes' if r.ok else 'NO'} |")
    with_agents = [r for r in results if r.agents and r.ok]
    if with_agents:
        engine = min(r.engine_cpu_ms_per_job for r in with_agents)
        bus = min(r.bus_cpu_ms_per_job for r in with_agents)
        worker = min(r.agents_cpu_ms_per_job for r in with_agents)
        print()
        print(f"Projection: the run's actors need {engine:.2f} ms of one core per job, so one run tops out near "
              f"{1000 / engine:.0f} jobs/s however many agents; each agent core adds about {1000 / worker:.0f} jobs/s "
              f"(worker + job at {worker:.2f} ms); the bus needs {bus:.2f} ms of CPU per job "
              f"({1000 / bus:.0f} jobs/s per bus core).")


def main(argv: list[str] | None = None) -> int:
    """Run the cases; return 1 when a run failed."""
    parser = argparse.ArgumentParser(description="Jobs/s of one run with 0, 1, 2, 4 agents on this machine.")
    parser.add_argument("--jobs", type=int, default=2000, help="scatter size (default: 2000)")
    parser.add_argument("--agents", default="0,1,2,4", help="agent counts, comma separated (default: 0,1,2,4)")
    parser.add_argument("--output", type=Path, help="JSON results (default: bench/results/agents-<time>.json)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.agents.split(",") if x.strip()]
    started = datetime.now(UTC)
    results: list[AgentsResult] = []
    with tempfile.TemporaryDirectory(prefix="sfbench-agents-") as tmp_name:
        base = Path(tmp_name)
        workflow, job = generate("scatter", args.jobs, base / "wf")
        server = EmbeddedServer(base / "nats" / "jetstream")
        server.start()
        try:
            assert server.process is not None
            bus_proc = psutil.Process(server.process.pid)
            for n in counts:
                result = run_case(n, args.jobs, workflow, job, server, base, bus_proc)
                print(f"# {n} agents: {result.jobs_per_s} jobs/s, wall {result.wall_s} s"
                      + ("" if result.ok else f" FAILED {result.error}"), file=sys.stderr)
                results.append(result)
        finally:
            server.stop()
    print_table(results)
    out = args.output or RESULTS / f"agents-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"started": started.isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                               "load_at_end": os.getloadavg(), "results": [asdict(r) for r in results]},
                              indent=2) + "\n")
    print(f"# results: {out}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
