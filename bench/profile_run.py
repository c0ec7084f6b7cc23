"""Profile one ``streamflow run`` of a benchmark workflow with cProfile, and summarise it.

Equivalent to ``python -m cProfile -o FILE -m streamflow run WF JOB ...`` (``-m streamflow``
rather than ``-m streamflow.cli.main``, whose ``__main__`` block ends with ``os._exit``, which
would skip writing the profile), plus a report: the top functions by cumulative and by
own time, and own time grouped by package. ``--timer cpu`` profiles with
``time.process_time`` instead of wall time, which tells CPU work apart from time spent
descheduled on a loaded machine.

Usage::

    python bench/profile_run.py --kind scatter --n 1000 [--timer wall|cpu] [--out FILE.prof]
    python bench/profile_run.py --stats FILE.prof          # only report on an existing profile
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import os
import pstats
import re
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "workflows"))

from generate import generate  # noqa: E402


def profile_run(kind: str, n: int, out: Path, timer: str) -> float:
    """Run ``streamflow run`` in this process under cProfile; return its wall seconds."""
    from streamflow.cli.main import main as cli_main

    with tempfile.TemporaryDirectory(prefix="sfbench-prof-") as tmp_name:
        tmp = Path(tmp_name)
        workflow, job = generate(kind, n, tmp / "wf")
        os.environ["STREAMFLOW_HOME"] = str(tmp / "home")
        os.environ.pop("STREAMFLOW_NATS_URL", None)
        profiler = cProfile.Profile(time.process_time) if timer == "cpu" else cProfile.Profile()
        argv = ["run", str(workflow), str(job), "--outdir", str(tmp / "out"), "--workdir", str(tmp / "work"),
                "--quiet"]
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            profiler.enable()
            try:
                code = cli_main(argv)
            finally:
                profiler.disable()
        wall = time.perf_counter() - start
        if code != 0:
            raise SystemExit(f"streamflow run exited {code}")
    out.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(out)
    return wall


def _package(filename: str, name: str) -> str:
    if filename == "~":
        # Builtins and C methods: keep the name (socket.send, posix.mkdir...), not the address.
        method = re.match(r"[<{]method '(\w+)' of '([\w.]+)' objects[>}]", name)
        if method:
            return f"builtin:{method.group(2)}.{method.group(1)}"
        return "builtin:" + name.strip("<>{}").removeprefix("built-in method ")
    for root in ("actors/", "events/", "streamflow/"):
        marker = f"/{root}"
        if marker in filename and "site-packages" not in filename:
            return "engine:" + root + filename.split(marker, 1)[1]
    if "site-packages/" in filename:
        return "lib:" + filename.split("site-packages/", 1)[1].split("/", 1)[0]
    return "stdlib:" + filename.rsplit("/", 1)[-1]


def report(path: Path, top: int) -> str:
    """The top functions (cumulative, own time) and own time per module/package."""
    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.strip_dirs()
    buffer.write("=== by cumulative time\n")
    stats.sort_stats("cumulative").print_stats(top)
    buffer.write("=== by own time (tottime)\n")
    stats.sort_stats("tottime").print_stats(top)
    raw = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    grouped: collections.Counter[str] = collections.Counter()
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in raw.items():
        grouped[_package(filename, name)] += tottime
    total = sum(grouped.values()) or 1.0
    buffer.write("=== own time by module (engine) / package (libraries)\n")
    for key, seconds in grouped.most_common(top):
        buffer.write(f"{seconds:8.2f}s {100 * seconds / total:5.1f}%  {key}\n")
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Profile a run (or read a profile) and print the report."""
    parser = argparse.ArgumentParser(description="Profile one streamflow run with cProfile.")
    parser.add_argument("--kind", choices=("scatter", "chain"), default="scatter")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--timer", choices=("wall", "cpu"), default="wall")
    parser.add_argument("--out", type=Path, help="the .prof file (default: bench/results/profile-<...>.prof)")
    parser.add_argument("--stats", type=Path, help="report on this existing profile instead of running")
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    if args.stats:
        print(report(args.stats, args.top))
        return 0
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out or HERE / "results" / f"profile-{args.kind}{args.n}-{args.timer}-{stamp}.prof"
    load = os.getloadavg()[0]
    wall = profile_run(args.kind, args.n, out, args.timer)
    print(f"# {args.kind}:{args.n} in {wall:.2f}s under cProfile ({args.timer} timer), load {load:.2f} -> "
          f"{os.getloadavg()[0]:.2f}; profile: {out}")
    print(report(out, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
