"""Per-process memory of one ``streamflow run`` of an N-job scatter.

Runs ``streamflow run`` on ``bench/workflows``' scatter with a fresh ``STREAMFLOW_HOME`` and samples
the RSS of every process of its tree every ``--interval`` seconds (psutil), grouped as
``engine`` (the ``streamflow run`` process), ``nats`` (the embedded ``nats-server``), ``reaper``
(the local connector's helper), ``jobs`` (the job processes) and ``prefork``: a child caught
between ``vfork`` and ``exec``, whose RSS is the engine's own (shared) pages. ``total`` leaves
``prefork`` out, ``summed`` counts it. Writes every sample as CSV
(``t,engine,nats,reaper,jobs,prefork,procs,total,summed``, MB) and prints the peaks and the wall
time as JSON; ``--keep DIR`` keeps the run's directory (its store: ``streamflow events`` with
``STREAMFLOW_HOME=DIR/home``)::

    python bench/memory_bench.py --n 10000 --csv /tmp/mem-10k.csv
    python bench/memory_bench.py --n 100000 --csv /tmp/mem.csv --interval 2 --keep /tmp/sf100k
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]

sys.path.insert(0, str(Path(__file__).resolve().parent / "workflows"))
from generate import generate  # type: ignore[import-not-found]


def _group(proc: psutil.Process, root: int, root_cmd: list[str]) -> str:
    if proc.pid == root:
        return "engine"
    try:
        name = proc.name()
        full = proc.cmdline()
        cmd = " ".join(full[:3])
    except psutil.Error:
        return "jobs"
    if full == root_cmd:
        # A child between (v)fork and exec: its RSS is the engine's own pages (shared), not more memory.
        return "prefork"
    if "nats-server" in name or "nats-server" in cmd:
        return "nats"
    if "python" in name or "reaper" in cmd:
        return "reaper"
    return "jobs"


def sample(pid: int, interval: float, out: list[dict[str, float]], stop: threading.Event) -> None:
    """Sample the tree of ``pid`` into ``out`` until ``stop`` is set."""
    start = time.monotonic()
    root = psutil.Process(pid)
    root_cmd = root.cmdline()
    while not stop.is_set():
        try:
            engine_rss = root.memory_info().rss / 2**20
        except psutil.Error:
            break
        row = {"t": time.monotonic() - start, "engine": 0.0, "nats": 0.0, "reaper": 0.0, "jobs": 0.0,
               "prefork": 0.0, "n": 0.0}
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for proc in procs:
            try:
                rss = proc.memory_info().rss / 2**20
                group = _group(proc, pid, root_cmd)
                if group == "jobs" and rss > 0.9 * engine_rss and proc.ppid() == pid:
                    group = "prefork"  # read while it exec'd: the cmdline was already the job's, the RSS not yet
            except psutil.Error:
                continue
            row[group] += rss
            row["n"] += 1
        row["total"] = row["engine"] + row["nats"] + row["reaper"] + row["jobs"]
        row["summed"] = row["total"] + row["prefork"]
        out.append(row)
        stop.wait(interval)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--csv", type=Path)
    parser.add_argument("--keep", type=Path, help="use this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="sfmem-"))
    tmp.mkdir(parents=True, exist_ok=True)
    workflow, job = generate("scatter", args.n, tmp)
    env = dict(os.environ, STREAMFLOW_HOME=str(tmp / "home"))
    env.pop("STREAMFLOW_NATS_URL", None)
    exe = shutil.which("streamflow", path=str(Path(sys.executable).parent)) or "streamflow"
    cmd = [exe, "run", str(workflow), str(job), "--outdir", str(tmp / "out"), "--workdir", str(tmp / "work"),
           "--quiet"]
    rows: list[dict[str, float]] = []
    stop = threading.Event()
    begin = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    thread = threading.Thread(target=sample, args=(proc.pid, args.interval, rows, stop), daemon=True)
    thread.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - begin
    stop.set()
    thread.join()
    if args.csv:
        with args.csv.open("w") as fh:
            fh.write("t,engine,nats,reaper,jobs,prefork,procs,total,summed\n")
            for r in rows:
                fh.write(f"{r['t']:.1f},{r['engine']:.1f},{r['nats']:.1f},{r['reaper']:.1f},{r['jobs']:.1f},"
                         f"{r['prefork']:.1f},{int(r['n'])},{r['total']:.1f},{r['summed']:.1f}\n")
    peaks = {k: max((r[k] for r in rows), default=0.0) for k in ("engine", "nats", "reaper", "jobs", "prefork", "total", "summed")}
    print(json.dumps({"n": args.n, "exit": proc.returncode, "wall_s": round(wall, 1),
                      "peak_mb": {k: round(v, 1) for k, v in peaks.items()},
                      "max_procs": int(max((r["n"] for r in rows), default=0)),
                      "stderr": stderr.strip()[-400:]}))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
