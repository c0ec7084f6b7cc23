"""How long ``streamflow resume`` takes to replay a large run's log and get back to work.

A scatter is run with ``streamflow run`` against a private ``nats-server`` until its log
holds ``--events`` events; the engine is then SIGKILLed (its jobs die with it) and
``streamflow resume`` is started. From the run's own events:

* **to RunResumed**: spawn of ``resume`` to its ``RunResumed`` (process start, lease takeover,
  the ``wf`` fold, the graph rebuilt);
* **replay to live**: spawn of ``resume`` to the first ``JobCompleted`` recorded after it,
  i.e. every actor has replayed its part of the log and jobs flow again;
* **total**: spawn to exit, the rest of the run included.

The resume runs in a child process that stamps its phases (wall and CPU time since spawn)
by wrapping the functions it goes through: imports, bus connected, ``wf`` fold, leases and
fences (``hold_groups``), graph rebuilt (``load_graph``), actor host started, snapshot
loaded (``ActorHost._restore``), log read + fold (to ``ActorHost._go_live``; the read's own
share is the time spent inside the log iterator), first job completed.

``--state DIR`` keeps the killed run (its JetStream store, work and output directories) in
``DIR`` and, when ``DIR`` already holds one, resumes that instead of running a new scatter:
every resume (``--repeat``) starts from the very same log, so two trees can be compared on
one log (``PYTHONPATH=/path/to/other/tree python bench/resume_bench.py --state DIR``).

The figure for a log ten times larger can be projected from ``bench/replay_bench.py``'s
read+fold rate (``--events 1000000``), which measures the part of a resume that grows with
the log.

Usage::

    python bench/resume_bench.py                      # ~100,000 events
    python bench/resume_bench.py --events 20000
    python bench/resume_bench.py --state /tmp/rs --repeat 3

Results: a table on stdout and ``bench/results/resume-<UTC time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
EVENTS_PER_JOB = 7  # a generous lower bound, so the scatter is long enough to reach --events
PHASES_ENV = "SFBENCH_PHASES"
PROFILE_ENV = "SFBENCH_PROFILE"
UNTIL_LIVE_ENV = "SFBENCH_UNTIL_LIVE"
#: (label, stamp that ends the phase) in resume order; a phase runs from the previous stamp.
PHASES = (("process start + imports", "main"), ("bus connect", "connected"), ("wf fold", "hold_groups>"),
          ("leases + fences", "hold_groups<"), ("graph rebuilt", "load_graph<"), ("RunResumed + host set-up",
          "host_run>"), ("actors started", "restore>"), ("snapshot fetch + decode", "ckpt_load<"),
          ("snapshot restored into the actors", "restore<"),
          ("log read + fold", "go_live"), ("to first job completed", "first_job"))


# -- the child: ``streamflow resume`` with its phases stamped --------------------------------

def _child(argv: list[str]) -> None:
    """Run ``streamflow resume`` (``argv``) like the console script, stamping its phases."""
    stamps: dict[str, float] = {"main": time.time()}
    cpu: dict[str, float] = {"main": time.process_time()}
    read_s = [0.0]
    profiler = None
    if os.environ.get(PROFILE_ENV):
        import cProfile

        profiler = cProfile.Profile(time.process_time)
        profiler.enable()

    def stamp(name: str) -> None:
        stamps.setdefault(name, time.time())
        cpu.setdefault(name, time.process_time())

    import contextlib

    import actors._runtime as runtime
    import streamflow.cli.engine as engine
    from events.log import EventLog

    def timed(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name, None)
        if original is None:
            return

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            stamp(f"{label}>")
            try:
                return await original(*args, **kwargs)
            finally:
                stamp(f"{label}<")
        setattr(owner, name, wrapper)

    timed(engine, "hold_groups", "hold_groups")
    timed(engine, "load_graph", "load_graph")
    timed(runtime.ActorHost, "_restore", "restore")
    import actors.checkpoint_manager as checkpoints

    timed(checkpoints.CheckpointManager, "load", "ckpt_load")
    original_open = engine.open_bus

    @contextlib.asynccontextmanager
    async def open_bus(*args: Any, **kwargs: Any) -> Any:
        async with original_open(*args, **kwargs) as nc:
            stamp("connected")
            yield nc
    engine.open_bus = open_bus
    original_run = runtime.ActorHost.run

    async def host_run(self: Any, *args: Any, **kwargs: Any) -> Any:
        stamp("host_run>")
        return await original_run(self, *args, **kwargs)
    runtime.ActorHost.run = host_run  # type: ignore[method-assign]
    original_live = runtime.ActorHost._go_live

    def go_live(self: Any, *args: Any, **kwargs: Any) -> Any:
        stamp("go_live")
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(os.environ[PROFILE_ENV])
        if os.environ.get(UNTIL_LIVE_ENV):
            def leave() -> None:
                save()
                os._exit(0)
            asyncio.get_running_loop().call_later(float(os.environ[UNTIL_LIVE_ENV]), leave)
        stamps.setdefault("events_replayed", float(getattr(self, "replayed_events", 0) or 0))
        stamps.setdefault("restored_from", float(getattr(self, "restored_from", 0) or 0))
        return original_live(self, *args, **kwargs)
    runtime.ActorHost._go_live = go_live  # type: ignore[method-assign]
    original_read = EventLog.read

    async def read(self: Any, *args: Any, **kwargs: Any) -> Any:
        iterator = original_read(self, *args, **kwargs).__aiter__()
        host = kwargs.get("follow", False)
        while True:
            start = time.perf_counter()
            try:
                record = await iterator.__anext__()
            except StopAsyncIteration:
                return
            finally:
                if host and "go_live" not in stamps:
                    read_s[0] += time.perf_counter() - start
            yield record
    EventLog.read = read  # type: ignore[method-assign]

    import atexit

    def save() -> None:
        Path(os.environ[PHASES_ENV]).write_text(json.dumps({"wall": stamps, "cpu": cpu, "read_s": read_s[0]}))
    atexit.register(save)
    from streamflow.cli.main import main

    sys.argv = ["streamflow", *argv]
    code = main()
    save()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# -- the parent ------------------------------------------------------------------------------

async def _stream_messages(server: Any) -> int:
    from events.log import EVENTS_STREAM
    from streamflow.bus import connect

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


async def _after(server: Any, run_id: str, since: float) -> dict[str, Any]:
    from events.log import EventLog
    from events.schema import JobCompleted, RunResumed
    from streamflow.bus import connect

    nc = await connect(server.options())
    try:
        resumed, first_done, events = None, None, 0
        async for record in EventLog(nc).read(run_id):
            events += 1
            when = record.time or record.envelope.occurred_at / 1e9
            if isinstance(record.body, RunResumed) and resumed is None and when >= since:
                resumed = when
            elif isinstance(record.body, JobCompleted) and resumed is not None and first_done is None:
                first_done = when
        return {"events": events, "resumed_at": resumed, "first_job_at": first_done,
                "to_resumed_s": round(resumed - since, 3) if resumed else None,
                "to_live_s": round(first_done - since, 3) if first_done else None}
    finally:
        await nc.close()


def _prepare(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    """Run the scatter until ``--events`` are logged, SIGKILL it, keep a pristine copy."""
    sys.path.insert(0, str(HERE / "workflows"))
    from generate import generate

    from streamflow.bus import EmbeddedServer

    jobs = max(10, int(args.events / EVENTS_PER_JOB * 1.15))
    workflow, job = generate("scatter", jobs, base / "wf")
    server = EmbeddedServer(base / "nats" / "jetstream")
    server.start()
    try:
        env = dict(os.environ, STREAMFLOW_HOME=str(base / "home"), STREAMFLOW_NATS_URL=server.url,
                   STREAMFLOW_NATS_TOKEN=server.token, TMPDIR=str(base))
        run_id = f"rresume{int(time.time())}"
        with (base / "run.log").open("wb") as err:
            run = subprocess.Popen([sys.executable, "-m", "streamflow", "run", str(workflow), str(job),
                                    "--run-id", run_id, "--quiet", "--outdir", str(base / "out"),
                                    "--workdir", str(base / "work")],
                                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        t0 = time.perf_counter()
        while run.poll() is None and asyncio.run(_stream_messages(server)) < args.events:
            time.sleep(0.5)
        if run.poll() is not None:
            raise SystemExit(f"the run ended (exit {run.returncode}) before its log reached {args.events} events; "
                             f"raise --events' scatter size")
        run.send_signal(signal.SIGKILL)
        run.wait()
        logged = asyncio.run(_stream_messages(server))
        print(f"# killed the engine after {time.perf_counter() - t0:.1f}s with {logged} events in the log",
              file=sys.stderr)
    finally:
        server.stop()
    state = {"jobs": jobs, "run_id": run_id, "events_at_kill": logged, "server_url": server.url,
             "token": server.token}
    pristine = base / "pristine"
    pristine.mkdir()
    for name in ("nats", "work", "out", "home"):
        if (base / name).exists():
            subprocess.run(["cp", "-a", str(base / name), str(pristine / name)], check=True)
    (base / "state.json").write_text(json.dumps(state))
    return state


def _resume_once(base: Path, state: dict[str, Any], profile: Path | None = None,
                 until_live: bool = False) -> dict[str, Any]:
    """Restore the pristine killed run, resume it once; return its figures."""
    sys.path.insert(0, str(HERE / "workflows"))
    from generate import expected_outputs

    from streamflow.bus import EmbeddedServer

    for name in ("nats", "work", "out", "home"):
        subprocess.run(["rm", "-rf", str(base / name)], check=True)
        if (base / "pristine" / name).exists():
            subprocess.run(["cp", "-a", str(base / "pristine" / name), str(base / name)], check=True)
    server = EmbeddedServer(base / "nats" / "jetstream")
    server.start()
    phases_file = base / "phases.json"
    phases_file.unlink(missing_ok=True)
    try:
        env = dict(os.environ, STREAMFLOW_HOME=str(base / "home"), STREAMFLOW_NATS_URL=server.url,
                   STREAMFLOW_NATS_TOKEN=server.token, TMPDIR=str(base), **{PHASES_ENV: str(phases_file)})
        if profile is not None:
            env[PROFILE_ENV] = str(profile.resolve())
        if until_live:
            env[UNTIL_LIVE_ENV] = "5"
        spawn = time.time()
        t1 = time.perf_counter()
        with (base / "resume.log").open("wb") as err, (base / "resume.out").open("wb") as out:
            code = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "resume",
                                   state["run_id"], "--quiet"], env=env, stdin=subprocess.DEVNULL,
                                  stdout=out, stderr=err, check=False).returncode
        total = time.perf_counter() - t1
        figures = asyncio.run(_after(server, state["run_id"], spawn))
    finally:
        server.stop()
    ok = code == 0 and (until_live or json.loads((base / "resume.out").read_text() or "null") == expected_outputs(
        "scatter", state["jobs"]))
    if not ok:
        print((base / "resume.log").read_text(errors="replace")[-2000:], file=sys.stderr)
    phases: dict[str, Any] = {}
    if phases_file.exists():
        stamps = json.loads(phases_file.read_text())
        wall, cpu = stamps["wall"], stamps["cpu"]
        if figures["first_job_at"]:
            wall["first_job"] = figures["first_job_at"]
        previous, before_cpu = spawn, 0.0
        for label, key in PHASES:
            if key not in wall:
                continue
            phases[label] = {"wall_s": round(wall[key] - previous, 3),
                             "cpu_s": round(cpu[key] - before_cpu, 3) if key in cpu else None}
            previous, before_cpu = wall[key], cpu.get(key, before_cpu)
        phases["(of which inside the log iterator)"] = {"wall_s": round(stamps["read_s"], 3), "cpu_s": None}
        phases["events replayed"] = int(wall.get("events_replayed", 0))
        phases["snapshot restored up to seq"] = int(wall.get("restored_from", 0))
    return {"to_resumed_s": figures["to_resumed_s"], "to_live_s": figures["to_live_s"], "total_s": round(total, 2),
            "events_total": figures["events"], "ok": ok, "phases": phases}


def main(argv: list[str] | None = None) -> int:
    """Run, kill, resume; print and save the figures."""
    parser = argparse.ArgumentParser(description="Time streamflow resume on a log of --events events.")
    parser.add_argument("--events", type=int, default=100_000, help="log size when the engine is killed")
    parser.add_argument("--state", type=Path, metavar="DIR",
                        help="keep the killed run in DIR, or resume the one already there")
    parser.add_argument("--repeat", type=int, default=1, help="resumes of the same killed run (default: 1)")
    parser.add_argument("--output", type=Path, help="JSON results (default: bench/results/resume-<time>.json)")
    parser.add_argument("--until-live", action="store_true",
                        help="stop each resume 5 s after its replay (no total, outputs not checked): quicker")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="cProfile (CPU timer) the last resume from its start to the end of its replay into FILE")
    args = parser.parse_args(argv)
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = datetime.now(UTC)
    with tempfile.TemporaryDirectory(prefix="sfbench-resume-") as tmp_name:
        base = args.state.resolve() if args.state else Path(tmp_name)
        base.mkdir(parents=True, exist_ok=True)
        if (base / "state.json").exists():
            state = json.loads((base / "state.json").read_text())
        else:
            state = _prepare(args, base)
        repeat = max(1, args.repeat)
        runs = [_resume_once(base, state, args.profile if i == repeat - 1 else None, args.until_live)
                for i in range(repeat)]
    ok = all(r["ok"] for r in runs)
    live = [r["to_live_s"] for r in runs if r["to_live_s"] is not None]
    print("| events at kill | to RunResumed s | replay to live s | resume total s | ok |")
    print("|---|---|---|---|---|")
    for r in runs:
        print(f"| {state['events_at_kill']:,} | {r['to_resumed_s']} | {r['to_live_s']} | {r['total_s']} | "
              f"{'yes' if r['ok'] else 'NO'} |")
    print("\n| phase (last resume) | wall s | cpu s |")
    print("|---|---|---|")
    for label, value in runs[-1]["phases"].items():
        if isinstance(value, dict):
            print(f"| {label} | {value['wall_s']} | {value['cpu_s'] if value['cpu_s'] is not None else ''} |")
        else:
            print(f"| {label} | {value} | |")
    result = {"jobs": state["jobs"], "events_at_kill": state["events_at_kill"], "runs": runs,
              "to_live_s_median": statistics.median(live) if live else None, "ok": ok}
    out_path = args.output or RESULTS / f"resume-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps({"started": started.isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                                    "load_at_end": os.getloadavg(), "result": result}, indent=2) + "\n")
    print(f"# results: {out_path}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(sys.argv[2:])
    sys.exit(main())
