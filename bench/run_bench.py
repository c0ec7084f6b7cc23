"""Time ``streamflow run`` against ``cwltool`` on the same workflows, side by side.

For each case (a shape and a size, see ``bench/workflows/generate.py``) and each repeat, the
runners run one after the other on the same generated workflow and job document, each in
a fresh temporary directory (StreamFlow with its own ``STREAMFLOW_HOME``, so every run
starts and stops its own embedded ``nats-server``: that cost is part of the figure).
Every run's outputs are checked against the expected output object, so the runners are
also checked against each other.

Measured per run: wall seconds (from spawn to exit), jobs/s (tool executions / wall),
user+system CPU seconds of the process tree and the peak RSS of its largest process (GNU
``/usr/bin/time -v`` when present, else ``getrusage(RUSAGE_CHILDREN)``, a high-water mark
over all children of this script), and, when psutil is importable, the peak summed RSS of
the whole process tree (sampled every 0.25 s; includes ``nats-server``).

Usage::

    python bench/run_bench.py                                  # default sizes, 1 repeat
    python bench/run_bench.py --sizes scatter:200,chain:20 --repeat 3
    python bench/run_bench.py --only streamflow --sizes scatter:1000

Results: a table on stdout and ``bench/results/bench-<UTC time>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "workflows"))

from generate import expected_outputs, generate, jobs_of  # noqa: E402

RESULTS = HERE / "results"
DEFAULT_SIZES = "scatter:200,scatter:1000,chain:20,chain:100"
RUNNERS = ("streamflow", "cwltool", "cwltool-parallel")
GNU_TIME = "/usr/bin/time"


@dataclass
class RunResult:
    """One run of one runner on one case."""

    case: str
    kind: str
    n: int
    jobs: int
    runner: str
    repeat: int
    wall_s: float
    exit_code: int
    outputs_ok: bool
    cpu_s: float | None = None
    max_rss_mb: float | None = None
    tree_rss_mb: float | None = None
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    error: str = ""
    command: list[str] = field(default_factory=list)

    @property
    def jobs_per_s(self) -> float:
        """Tool executions per wall second."""
        return self.jobs / self.wall_s if self.wall_s > 0 else 0.0


def _gnu_time() -> str | None:
    """The GNU time binary if it supports ``-v``."""
    if not os.path.exists(GNU_TIME):
        return None
    probe = subprocess.run([GNU_TIME, "-v", "true"], capture_output=True, text=True, check=False)
    return GNU_TIME if "Maximum resident set size" in probe.stderr else None


def _parse_gnu_time(text: str) -> tuple[float | None, float | None]:
    """CPU seconds (user + system) and max RSS in MiB from ``time -v`` output."""
    def grab(label: str) -> float | None:
        match = re.search(rf"{re.escape(label)}:\s*([0-9.]+)", text)
        return float(match.group(1)) if match else None

    user, system, rss_kb = grab("User time (seconds)"), grab("System time (seconds)"), grab(
        "Maximum resident set size (kbytes)")
    cpu = (user or 0.0) + (system or 0.0) if user is not None else None
    return cpu, (rss_kb / 1024 if rss_kb is not None else None)


class _TreeSampler:
    """Sample the summed RSS of a process and its descendants in a thread (needs psutil)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        import psutil  # type: ignore[import-untyped]

        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            total = 0
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(self.interval)


def _have_psutil() -> bool:
    return importlib.util.find_spec("psutil") is not None


def _normalise(value: Any) -> Any:
    """Drop runner-specific details (locations, paths) from an output object."""
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            keep = ("class", "basename", "size", "checksum", "listing")
            return {k: _normalise(v) for k, v in value.items() if k in keep}
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _command(runner: str, workflow: Path, job: Path, tmp: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    bindir = Path(sys.executable).parent
    outdir = tmp / "out"
    if runner == "streamflow":
        exe = shutil.which("streamflow", path=str(bindir)) or "streamflow"
        env["STREAMFLOW_HOME"] = str(tmp / "home")
        # Never join a bus from the caller's environment: every run gets its own server.
        env.pop("STREAMFLOW_NATS_URL", None)
        return [exe, "run", str(workflow), str(job), "--outdir", str(outdir),
                "--workdir", str(tmp / "work"), "--quiet"], env
    exe = shutil.which("cwltool", path=str(bindir)) or "cwltool"
    cmd = [exe, "--no-container", "--quiet", "--outdir", str(outdir),
           "--tmpdir-prefix", f"{tmp}/cwltmp/", "--tmp-outdir-prefix", f"{tmp}/cwlout/"]
    if runner == "cwltool-parallel":
        cmd.append("--parallel")
    return [*cmd, str(workflow), str(job)], env


def run_once(runner: str, kind: str, n: int, workflow: Path, job: Path, repeat: int, *,
             timeout: float, time_bin: str | None, sample: bool) -> RunResult:
    """Run one runner once on one case; measure it and check its outputs."""
    with tempfile.TemporaryDirectory(prefix=f"sfbench-{runner}-") as tmp_name:
        tmp = Path(tmp_name)
        cmd, env = _command(runner, workflow, job, tmp)
        timefile = tmp / "time.txt"
        full = [time_bin, "-v", "-o", str(timefile), *cmd] if time_bin else cmd
        load = os.getloadavg()
        rss_before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.Popen(full, env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        sampler = _TreeSampler(proc.pid) if sample else None
        error = ""
        try:
            if sampler is not None:
                with sampler:
                    stdout, stderr = proc.communicate(timeout=timeout)
            else:
                stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
            error = f"timeout after {timeout:.0f}s"
        wall = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if time_bin and timefile.exists():
            cpu, max_rss = _parse_gnu_time(timefile.read_text())
        else:
            cpu = (usage.ru_utime - cpu_before.ru_utime) + (usage.ru_stime - cpu_before.ru_stime)
            # A high-water mark over every child so far: only meaningful when it grew.
            max_rss = usage.ru_maxrss / 1024 if usage.ru_maxrss > rss_before else None
        ok = False
        if proc.returncode == 0 and not error:
            try:
                ok = _normalise(json.loads(stdout)) == expected_outputs(kind, n)
            except json.JSONDecodeError as exc:
                error = f"stdout is not JSON: {exc}"
            if not ok and not error:
                error = "outputs differ from the expected ones"
        elif not error:
            error = f"exit {proc.returncode}: {stderr.strip()[-400:]}"
        return RunResult(
            case=f"{kind}:{n}", kind=kind, n=n, jobs=jobs_of(kind, n), runner=runner, repeat=repeat,
            wall_s=round(wall, 3), exit_code=proc.returncode, outputs_ok=ok,
            cpu_s=round(cpu, 2) if cpu is not None else None,
            max_rss_mb=round(max_rss, 1) if max_rss is not None else None,
            tree_rss_mb=round(sampler.peak_bytes / 2**20, 1) if sampler and sampler.peak_bytes else None,
            load_before=(round(load[0], 2), round(load[1], 2), round(load[2], 2)), error=error, command=cmd,
        )


def parse_sizes(text: str) -> list[tuple[str, int]]:
    """Parse ``scatter:200,chain:20`` (commas or spaces) into (kind, n) pairs."""
    cases: list[tuple[str, int]] = []
    for item in re.split(r"[,\s]+", text.strip()):
        if not item:
            continue
        kind, _, size = item.partition(":")
        if kind not in ("scatter", "chain") or not size.isdigit() or int(size) < 1:
            raise argparse.ArgumentTypeError(f"bad size {item!r}: expected scatter:N or chain:N")
        cases.append((kind, int(size)))
    return cases


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def summarise(results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per (case, runner): medians over repeats."""
    rows: list[dict[str, Any]] = []
    keys = list(dict.fromkeys((r.case, r.runner) for r in results))
    for case, runner in keys:
        runs = [r for r in results if r.case == case and r.runner == runner]
        walls = [r.wall_s for r in runs]
        wall = statistics.median(walls)
        cpus = [r.cpu_s for r in runs if r.cpu_s is not None]
        rss = [r.max_rss_mb for r in runs if r.max_rss_mb is not None]
        tree = [r.tree_rss_mb for r in runs if r.tree_rss_mb is not None]
        rows.append({
            "case": case, "runner": runner, "jobs": runs[0].jobs, "repeats": len(runs),
            "wall_s_median": round(wall, 3), "wall_s_min": min(walls), "wall_s_max": max(walls),
            "jobs_per_s": round(runs[0].jobs / wall, 2) if wall else 0.0,
            "cpu_s_median": round(statistics.median(cpus), 2) if cpus else None,
            "max_rss_mb": max(rss) if rss else None,
            "tree_rss_mb": max(tree) if tree else None,
            "ok": all(r.outputs_ok for r in runs),
            "load_1m": round(statistics.mean(r.load_before[0] for r in runs), 2),
        })
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    """Print the summary as a Markdown table."""
    header = ("case", "runner", "jobs", "wall s", "jobs/s", "cpu s", "max RSS MB", "tree RSS MB", "ok",
              "load")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        wall = f"{row['wall_s_median']:.2f}"
        if row["repeats"] > 1:
            wall += f" ({row['wall_s_min']:.2f}-{row['wall_s_max']:.2f})"
        cells = (row["case"], row["runner"], str(row["jobs"]), wall, f"{row['jobs_per_s']:.1f}",
                 _fmt(row["cpu_s_median"], ".1f"), _fmt(row["max_rss_mb"], ".0f"),
                 _fmt(row["tree_rss_mb"], ".0f"), "yes" if row["ok"] else "NO", f"{row['load_1m']:.2f}")
        print("| " + " | ".join(cells) + " |")


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[-1] if (out.stdout or out.stderr).strip() else "?"


def _dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                             check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return "?"
    return rev + ("+dirty" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return 1 when a run failed or produced wrong outputs."""
    parser = argparse.ArgumentParser(description="Time streamflow run against cwltool on the same workflows.")
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes(DEFAULT_SIZES),
                        help=f"cases as KIND:N, comma separated (default: {DEFAULT_SIZES})")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each runner on each case (default: 1)")
    parser.add_argument("--only", choices=("streamflow", "cwltool"),
                        help="only StreamFlow, or only cwltool (both its sequential and --parallel modes)")
    parser.add_argument("--no-parallel", action="store_true", help="skip cwltool --parallel")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a run is killed")
    parser.add_argument("--output", type=Path, help="the JSON results file (default: bench/results/bench-<time>.json)")
    args = parser.parse_args(argv)

    runners = [r for r in RUNNERS if (args.only is None or r.startswith(args.only))
               and not (args.no_parallel and r == "cwltool-parallel")]
    time_bin = _gnu_time()
    sample = _have_psutil()
    started = datetime.now(UTC)
    meta: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "host": platform.node(), "platform": platform.platform(), "python": platform.python_version(),
        "cpus": os.cpu_count(), "load_at_start": os.getloadavg(),
        "streamflow": _dist_version("streamflow-nats"),
        "cwltool": _version([str(Path(sys.executable).parent / "cwltool"), "--version"])
        if any(r.startswith("cwltool") for r in runners) else None,
        "git": _git_revision(), "rss_source": "GNU time -v" if time_bin else "getrusage(RUSAGE_CHILDREN)",
        "tree_rss": "psutil, 0.25 s samples" if sample else None, "runners": runners,
        "sizes": [f"{k}:{n}" for k, n in args.sizes], "repeat": args.repeat,
    }
    print(f"# {meta['started']} on {meta['host']} ({meta['cpus']} CPUs, load {os.getloadavg()[0]:.2f}); "
          f"runners: {', '.join(runners)}", file=sys.stderr)
    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="sfbench-wf-") as wf_dir:
        for kind, n in args.sizes:
            workflow, job = generate(kind, n, Path(wf_dir) / f"{kind}-{n}")
            for rep in range(1, args.repeat + 1):
                for runner in runners:
                    result = run_once(runner, kind, n, workflow, job, rep, timeout=args.timeout,
                                      time_bin=time_bin, sample=sample)
                    results.append(result)
                    status = "ok" if result.outputs_ok else f"FAILED ({result.error})"
                    print(f"# {kind}:{n} #{rep} {runner:<17} {result.wall_s:8.2f}s {status}", file=sys.stderr)
    meta["load_at_end"] = os.getloadavg()
    meta["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    rows = summarise(results)
    print_table(rows)
    out = args.output or RESULTS / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": rows, "runs": [asdict(r) for r in results]}, indent=2)
                   + "\n")
    print(f"# results: {out}", file=sys.stderr)
    return 0 if all(r.outputs_ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
