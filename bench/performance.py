"""Every speed and scale figure of the performance goals, in one command, into ``docs/performance.md``.

It runs, on this machine, one after the other:

1. **Side by side** (``run_bench.run_once``): a one-step workflow (``chain:1``, the fixed
   cost), the 1,000-job scatter + gather and the 100-step chain, with ``streamflow run``,
   ``cwltool --no-container`` and ``cwltool --parallel --no-container``, interleaved, ``--repeat``
   times; the ratio is StreamFlow's median wall time over cwltool's (sequential) median.
2. **Scaling** (StreamFlow alone, once): the 10,000-job scatter and the 1,000-step chain, each
   compared with its 10x smaller case of step 1 (goal: at most 11x the time).
3. **Agents** (``agents_bench``): jobs/s of one run with 0, 1, 2 and 4 agents, and the per-job
   CPU of the run's actors, the agents and the bus (the inputs of the projection).
4. **Resume** (``resume_bench``): replay to live of a run killed with ~100,000 events logged.
5. **Replay rate** (``replay_bench``): read + fold of 1,000,000 events (the 1M figure).
6. Optionally (``--conformance``) the CWL v1.2 conformance suite through
   ``streamflow-cwl-runner`` with ``-j 2``; optionally (``--huge``) a 100,000-job scatter.

Usage::

    python bench/performance.py                         # ~15-25 minutes on 2 cores
    python bench/performance.py --quick                 # small sizes, to check the machinery
    python bench/performance.py --conformance --huge    # everything (adds ~30 min)

It prints the tables and rewrites ``docs/performance.md`` (``--doc PATH`` elsewhere, ``--no-doc``
to leave it). The JSON of every part lands in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "workflows"))

import run_bench  # noqa: E402
from generate import generate  # noqa: E402

RESULTS = HERE / "results"


def _side_by_side(cases: list[tuple[str, int]], repeat: int, timeout: float) -> list[dict[str, Any]]:
    time_bin, sample = run_bench._gnu_time(), run_bench._have_psutil()
    results = []
    with tempfile.TemporaryDirectory(prefix="sfperf-wf-") as wf_dir:
        for kind, n in cases:
            workflow, job = generate(kind, n, Path(wf_dir) / f"{kind}-{n}")
            for rep in range(1, repeat + 1):
                for runner in run_bench.RUNNERS:
                    r = run_bench.run_once(runner, kind, n, workflow, job, rep, timeout=timeout,
                                           time_bin=time_bin, sample=sample)
                    print(f"# {kind}:{n} #{rep} {runner:<17} {r.wall_s:8.2f}s "
                          f"{'ok' if r.outputs_ok else 'FAILED ' + r.error}", file=sys.stderr)
                    results.append(r)
    return run_bench.summarise(results)


def _streamflow_only(cases: list[tuple[str, int]], timeout: float) -> list[dict[str, Any]]:
    time_bin, sample = run_bench._gnu_time(), run_bench._have_psutil()
    results = []
    with tempfile.TemporaryDirectory(prefix="sfperf-scale-") as wf_dir:
        for kind, n in cases:
            workflow, job = generate(kind, n, Path(wf_dir) / f"{kind}-{n}")
            r = run_bench.run_once("streamflow", kind, n, workflow, job, 1, timeout=timeout, time_bin=time_bin,
                                   sample=sample)
            print(f"# {kind}:{n} streamflow {r.wall_s:8.2f}s {'ok' if r.outputs_ok else 'FAILED ' + r.error}",
                  file=sys.stderr)
            results.append(r)
    return run_bench.summarise(results)


def _script(name: str, args: list[str], timeout: float) -> dict[str, Any] | None:
    """Run another bench script with ``--output``; its JSON, or None when it failed."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out = Path(handle.name)
    try:
        proc = subprocess.run([sys.executable, str(HERE / name), *args, "--output", str(out)], timeout=timeout,
                              capture_output=True, text=True, check=False)
        sys.stderr.write(proc.stdout)
        if proc.returncode != 0 or not out.stat().st_size:
            print(f"# {name} failed (exit {proc.returncode}): {proc.stderr[-1500:]}", file=sys.stderr)
            return None
        data: dict[str, Any] = json.loads(out.read_text())
        return data
    except subprocess.TimeoutExpired:
        print(f"# {name} timed out after {timeout:.0f}s", file=sys.stderr)
        return None
    finally:
        out.unlink(missing_ok=True)


def _chain_latency(n: int, repeat: int, timeout: float) -> list[dict[str, Any]] | None:
    """``bench/chain_latency.py --json``: the hops of each sequential step, one object per run."""
    try:
        proc = subprocess.run([sys.executable, str(HERE / "chain_latency.py"), "--n", str(n), "--repeat", str(repeat),
                               "--json"], timeout=timeout, capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired:
        print(f"# chain_latency.py timed out after {timeout:.0f}s", file=sys.stderr)
        return None
    if proc.returncode != 0:
        print(f"# chain_latency.py failed (exit {proc.returncode}): {proc.stderr[-1500:]}", file=sys.stderr)
        return None
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _row(rows: list[dict[str, Any]], case: str, runner: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["case"] == case and r["runner"] == runner), None)


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**not met**")


def render(data: dict[str, Any]) -> str:
    """The Markdown of docs/performance.md."""
    meta, rows, scale = data["meta"], data["side_by_side"], data["scaling"]
    small_one, cases = data["cases"][0], data["cases"]
    lines = [
        "# Performance",
        "",
        "Generated by `python bench/performance.py` (do not edit by hand; re-run it). Benchmarks, never timed "
        "tests, check the speed goals (DESIGN §9).",
        "",
        f"Measured {meta['started']} on `{meta['host']}`: {meta['cpus']} CPUs, {meta['platform']}, Python "
        f"{meta['python']}, tree `{meta['git']}`; cwltool {meta['cwltool']}. Load average at start "
        f"{meta['load_at_start'][0]:.2f}, at end {meta['load_at_end'][0]:.2f}. Every StreamFlow run starts and stops "
        "its own embedded `nats-server` (fresh `STREAMFLOW_HOME`): that is part of its time, as for a user.",
        "",
        "## Side by side with cwltool",
        "",
        f"Median of {data['repeat']} interleaved runs each; ratio = StreamFlow / cwltool (sequential, "
        "`--no-container`). cpu s: user + system of the whole process tree (StreamFlow: with `nats-server` and "
        "the jobs). tree RSS: peak summed RSS of every process of the run.",
        "",
        "| case | runner | wall s | jobs/s | cpu s | max RSS MB | tree RSS MB | ratio | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, n in cases:
        case = f"{kind}:{n}"
        base = _row(rows, case, "cwltool")
        for runner in run_bench.RUNNERS:
            r = _row(rows, case, runner)
            if r is None:
                continue
            ratio = f"{r['wall_s_median'] / base['wall_s_median']:.2f}" if base and base["wall_s_median"] else "-"
            label = "one-step workflow" if case == "chain:1" else case
            lines.append(
                f"| {label} | {runner} | {r['wall_s_median']:.2f} ({r['wall_s_min']:.2f}-{r['wall_s_max']:.2f}) | "
                f"{r['jobs_per_s']:.1f} | {run_bench._fmt(r['cpu_s_median'], '.1f')} | "
                f"{run_bench._fmt(r['max_rss_mb'], '.0f')} | {run_bench._fmt(r['tree_rss_mb'], '.0f')} | "
                f"{ratio if runner != 'cwltool' else '1'} | {'yes' if r['ok'] else 'NO'} |")
    lines += ["", "## Scaling (StreamFlow alone)", "",
              "| case | wall s | ms/job | vs the 10x smaller case | goal (at most 11x) | tree RSS MB | ok |",
              "|---|---|---|---|---|---|---|"]
    for r in scale:
        kind, n = r["case"].split(":")
        small = _row(rows, f"{kind}:{int(n) // 10}", "streamflow")
        times = r["wall_s_median"] / small["wall_s_median"] if small else None
        lines.append(f"| {r['case']} | {r['wall_s_median']:.1f} | {1000 * r['wall_s_median'] / r['jobs']:.1f} | "
                     f"{'-' if times is None else f'{times:.1f}x'} | "
                     f"{_met(None if times is None else times <= 11)} | "
                     f"{run_bench._fmt(r['tree_rss_mb'], '.0f')} | {'yes' if r['ok'] else 'NO'} |")
    lines += ["", "## Goals", "", "| goal | figure | |", "|---|---|---|"]
    for case, goal in (("scatter:1000", 0.25), ("chain:100", 0.5), (f"{small_one[0]}:{small_one[1]}", 0.5)):
        sf, cw = _row(rows, case, "streamflow"), _row(rows, case, "cwltool")
        if sf and cw:
            ratio = sf["wall_s_median"] / cw["wall_s_median"]
            name = "one-step workflow" if case == "chain:1" else case
            lines.append(f"| {name}: at most {goal}x cwltool | {ratio:.2f}x ({sf['wall_s_median']:.2f} s vs "
                         f"{cw['wall_s_median']:.2f} s) | {_met(ratio <= goal)} |")
    one, chain = _row(rows, "chain:1", "streamflow"), _row(rows, "chain:100", "streamflow")
    latency = data.get("chain_latency")
    if latency:
        engine = statistics.median(r["engine_per_step_ms"]["median"] for r in latency)
        wall_step = statistics.median(r["wall_per_step_ms"]["median"] for r in latency)
        lines.append(f"| 100-step chain: under 5 ms of engine time per sequential step (one job's recorded end "
                     f"to the next one's recorded start; see below) | {engine:.1f} ms (wall per step "
                     f"{wall_step:.1f} ms, the job included) | {_met(engine < 5)} |")
    if one and chain:
        lines.append(f"| one-step workflow under 0.8 s | {one['wall_s_median']:.2f} s | "
                     f"{_met(one['wall_s_median'] < 0.8)} |")
    resume = data.get("resume")
    if resume:
        res = resume["result"]
        last = res["runs"][-1] if res.get("runs") else res  # older results files: one resume, flat
        live = res.get("to_live_s_median", last.get("to_live_s"))
        lines.append(f"| resume of a {res['events_at_kill']:,}-event run, replay to live, under 5 s | "
                     f"{live} s (to RunResumed {last['to_resumed_s']} s) | {_met(live is not None and live < 5)} |")
    conf = data.get("conformance")
    if conf:
        lines.append(f"| conformance -j 2 under 60 s, no lost test | {conf['wall_seconds']} s, "
                     f"{conf['passed']}/{conf['total']} passed | {_met(conf['wall_seconds'] < 60)} |")
    huge = data.get("huge")
    if not huge:
        lines.append("| 100,000-job scatter completes, every process under 2 GB | not measured in this run "
                     "(`--huge`) | n/a |")
    if huge:
        h = huge[0]
        lines.append(f"| 100,000-job scatter completes, every process under 2 GB | {h['wall_s_median']:.0f} s, "
                     f"tree RSS {run_bench._fmt(h['tree_rss_mb'], '.0f')} MB | "
                     f"{_met(h['ok'] and (h['tree_rss_mb'] or 0) < 2048)} |")
    if conf:
        lines += ["", "Conformance failures here need what this machine lacks (container images that cannot be "
                  "pulled, network access); `bench/PROFILE.md`, \"Fixed cost\", lists them."]
    if latency:
        hops = list(latency[0]["hops_ms"])
        lines += ["", "## One sequential step, hop by hop", "",
                  f"`bench/chain_latency.py --n {latency[0]['n']}`, {len(latency)} run(s): the critical path of "
                  "each step after the first, between the server timestamps of its events (median over the steps "
                  "of a run, then the median over the runs). *engine* = the previous job's `JobCompleted` to this "
                  "job's `JobStarted`: everything the actors, the bus and the work queue do between two jobs; "
                  "*job* = `JobStarted` to `JobCompleted` (the worker's CWL layer and the tool's own process).",
                  "", "| hop | median ms | p90 ms |", "|---|---|---|"]
        for hop in hops:
            med = statistics.median(r["hops_ms"][hop]["median"] for r in latency)
            p90 = statistics.median(r["hops_ms"][hop]["p90"] for r in latency)
            lines.append(f"| {hop} | {med:.2f} | {p90:.2f} |")
        for name, key in (("engine (token .. start)", "engine_per_step_ms"), ("wall per step", "wall_per_step_ms")):
            med = statistics.median(r[key]["median"] for r in latency)
            p90 = statistics.median(r[key]["p90"] for r in latency)
            lines.append(f"| **{name}** | {med:.2f} | {p90:.2f} |")
    replay = data.get("replay")
    if replay:
        r = replay["result"]
        lines += ["", "## Replay rate", "",
                  f"`bench/replay_bench.py --events {r['events'] - 2}`: read + fold of {r['events']:,} events in "
                  f"{statistics.median(r['read_fold_s']):.1f} s ({r['read_fold_eps']:,} events/s; read alone "
                  f"{r['read_eps']:,}/s, fold alone {r['fold_eps']:,}/s; {r['stream_bytes'] / 2**20:.0f} MiB). "
                  "This is the part of a resume that grows with the log."]
    agents = data.get("agents")
    if agents:
        lines += ["", "## Agents", "",
                  f"`bench/agents_bench.py`: one {agents['results'][0]['jobs']}-job scatter per line, on this "
                  f"{meta['cpus']}-core machine (agents and the run share its cores). jobs/s from the run's own "
                  "events (first JobStarted to last JobCompleted); CPU per job from psutil (the run process's "
                  "includes its start-up).", "",
                  "| agents | jobs/s | wall s | engine CPU ms/job | agents CPU ms/job | bus CPU ms/job | ok |",
                  "|---|---|---|---|---|---|---|"]
        for a in agents["results"]:
            who = a["agents"] or "0 (the run's own workers)"
            lines.append(f"| {who} | {a['jobs_per_s']} | {a['wall_s']} | "
                         f"{a['engine_cpu_ms_per_job']} | {a['agents_cpu_ms_per_job']} | {a['bus_cpu_ms_per_job']} | "
                         f"{'yes' if a['ok'] else 'NO'} |")
        ok = [a for a in agents["results"] if a["agents"] and a["ok"]]
        if ok:
            engine = min(a["engine_cpu_ms_per_job"] for a in ok)
            worker = min(a["agents_cpu_ms_per_job"] for a in ok)
            bus = min(a["bus_cpu_ms_per_job"] for a in ok)
            lines += ["", "**Projection (N agents on N machines).** A run's actors live in one process and use one "
                      f"core: at {engine:.2f} ms per job they sustain about {1000 / engine:.0f} jobs/s, whatever the "
                      f"number of agents. Each agent core adds about {1000 / worker:.0f} jobs/s of these trivial jobs "
                      f"({worker:.2f} ms per job for the worker and the job), so about "
                      f"{max(1, round(engine and (worker / engine)))} agent core(s) saturate one run's actors; "
                      f"beyond that the next bottleneck is the run's actor process, then the bus at "
                      f"{bus:.2f} ms CPU per job ({1000 / bus:.0f} jobs/s per `nats-server` core). Real jobs that "
                      "run for seconds move the knee: a run of 10 s jobs needs "
                      f"{10_000 / engine:.0f} agent slots before its actors saturate."]
    lines += ["", "See `bench/PROFILE.md` for where the time goes and what was changed to get here.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every part; print the Markdown; write docs/performance.md."""
    parser = argparse.ArgumentParser(description="All performance goals, measured, into docs/performance.md.")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs per side-by-side case (default 3)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (checks the machinery)")
    parser.add_argument("--conformance", action="store_true", help="also the CWL conformance suite (-j 2)")
    parser.add_argument("--huge", action="store_true", help="also a 100,000-job scatter")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "performance.md")
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only rewrite the document from a results file of an earlier run")
    args = parser.parse_args(argv)
    if args.render:
        text = render(json.loads(args.render.read_text()))
        print(text)
        if not args.no_doc:
            args.doc.write_text(text)
        return 0
    big = 10 if args.quick else 1000
    cases = [("chain", 1), ("scatter", big), ("chain", 100 if not args.quick else 10)]
    scale_cases = [("scatter", big * 10), ("chain", (100 if not args.quick else 10) * 10)]
    repeat = 1 if args.quick else args.repeat
    started = datetime.now(UTC)
    meta = {"started": started.isoformat(timespec="seconds"), "host": platform.node(),
            "platform": platform.platform(terse=True), "python": platform.python_version(),
            "cpus": os.cpu_count(), "load_at_start": os.getloadavg(), "git": run_bench._git_revision(),
            "cwltool": run_bench._dist_version("cwltool")}
    data: dict[str, Any] = {"meta": meta, "repeat": repeat, "cases": cases}
    data["side_by_side"] = _side_by_side(cases, repeat, args.timeout)
    data["scaling"] = _streamflow_only(scale_cases, args.timeout)
    data["chain_latency"] = _chain_latency(10 if args.quick else 100, repeat, args.timeout)
    data["agents"] = _script("agents_bench.py", ["--jobs", "200" if args.quick else "2000"], args.timeout)
    data["resume"] = _script("resume_bench.py", ["--events", "3000" if args.quick else "100000"], args.timeout)
    data["replay"] = _script("replay_bench.py", ["--events", "20000" if args.quick else "1000000", "--repeat", "1"],
                             args.timeout)
    if args.conformance:
        from conformance_bench import run_suite

        # The runner and cwltest live beside this interpreter (a venv need not be activated).
        os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        try:
            data["conformance"] = run_suite("streamflow-cwl-runner", 2, None, args.timeout)
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            print(f"# conformance failed: {exc}", file=sys.stderr)
    if args.huge:
        data["huge"] = _streamflow_only([("scatter", 100_000)], 4 * args.timeout)
    meta["load_at_end"] = os.getloadavg()
    # The figures first: a rendering that fails must not lose half an hour of measurements
    # (``--render`` rewrites the document from this file).
    out = RESULTS / f"performance-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"# results: {out}", file=sys.stderr)
    text = render(data)
    print(text)
    if not args.no_doc:
        args.doc.write_text(text)
        print(f"# wrote {args.doc}", file=sys.stderr)
    return 0 if all(r["ok"] for r in data["side_by_side"] + data["scaling"]) else 1


if __name__ == "__main__":
    sys.exit(main())
