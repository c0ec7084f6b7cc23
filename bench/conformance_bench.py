"""The CWL v1.2 conformance suite, side by side: ``streamflow-cwl-runner`` vs ``cwltool``.

Runs ``../shared/cwl-conformance.sh`` once per runner, one after the other on the same
machine, with the same tests and the same ``-j``, and prints one line per runner: passed,
failed, unsupported, total and wall time (the script's own ``wall_seconds``). StreamFlow
gets a fresh ``STREAMFLOW_HOME`` per run, so its time includes starting the embedded
nats-server and the warm runner daemon.

Usage::

    python bench/conformance_bench.py                          # whole suite, -j 2, both runners
    python bench/conformance_bench.py --tags required          # the required tests only
    python bench/conformance_bench.py --only streamflow --repeat 3
    python bench/conformance_bench.py --runner "cwltool --no-container --parallel"

Results are also written as JSON to ``bench/results/conformance-<time>.json``, with the
per-test breakdown read from cwltest's JUnit file: summed test time, the tests that sleep
(``timelimit*``: ~71 s of fixed sleeping) apart from the others (their mean), the slowest
ordinary tests, and the ``-j`` makespan of cwltest's order replayed with those times (what
the suite would take with no harness overhead: the floor the runner's per-test time sets).
``--keep DIR`` keeps each run's output folder (junit.xml, cwltest.log) under DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = (ROOT / ".." / "shared").resolve()
RUNNERS = {"streamflow": "streamflow-cwl-runner", "cwltool": "cwltool --no-container"}
_SUMMARY = re.compile(r"conformance: (\d+) passed, (\d+) failed, (\d+) unsupported of (\d+)")


def breakdown(junit: Path, jobs: int, slowest: int = 10) -> dict[str, object]:
    """Per-test times of one run (cwltest's JUnit file), the sleeping tests apart."""
    rows = []
    for case in ET.parse(junit).iter("testcase"):
        url = case.get("url") or ""
        order = int(url.rsplit("#", 1)[1]) if "#" in url else len(rows)
        test_id = case.get("file") or case.get("name") or "?"
        rows.append((order, test_id, float(case.get("time") or 0.0)))
    rows.sort()
    lanes = [0.0] * max(1, jobs)
    for _, _, seconds in rows:  # cwltest hands the next test to the first free lane
        lanes[lanes.index(min(lanes))] += seconds
    sleeping = [r for r in rows if "timelimit" in r[1]]
    ordinary = [r for r in rows if "timelimit" not in r[1]]
    times = sorted(r[2] for r in ordinary)
    return {
        "tests": len(rows), "summed_s": round(sum(r[2] for r in rows), 1),
        "makespan_s": round(max(lanes), 1),
        "sleeping_s": round(sum(r[2] for r in sleeping), 1), "sleeping_tests": len(sleeping),
        "ordinary_mean_s": round(statistics.mean(times), 3) if times else 0.0,
        "ordinary_median_s": round(statistics.median(times), 3) if times else 0.0,
        "ordinary_p90_s": round(times[int(0.9 * (len(times) - 1))], 3) if times else 0.0,
        "slowest": [(test_id, round(seconds, 2)) for _, test_id, seconds in
                    sorted(ordinary, key=lambda r: -r[2])[:slowest]],
    }


def run_suite(runner: str, jobs: int, tags: str | None, timeout: float, keep: Path | None = None) -> dict[str, object]:
    """One conformance run of ``runner``; its counts, wall time and per-test breakdown."""
    with tempfile.TemporaryDirectory(prefix="sf-conf-") as tmp:
        out = Path(tmp) / "out"
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
        env["STREAMFLOW_HOME"] = str(Path(tmp) / "home")
        env["STREAMFLOW_RUNNER_IDLE"] = "5"
        command = ["bash", str(SHARED / "cwl-conformance.sh"), "-j", str(jobs), "--timeout", "300"]
        if tags:
            command += ["-t", tags]
        command += [runner, str(SHARED / "cwl-v1.2"), str(out)]
        begin = time.monotonic()
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        elapsed = time.monotonic() - begin
        summary = _SUMMARY.search(result.stdout)
        if summary is None:
            raise RuntimeError(f"{runner}: no summary\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
        passed, failed, unsupported, total = map(int, summary.groups())
        wall = re.search(r"wall_seconds: (\d+)", (out / "runner-version.txt").read_text())
        per_test = breakdown(out / "junit.xml", jobs) if (out / "junit.xml").exists() else {}
        if keep is not None:
            dest = keep / f"{runner.split()[0]}-{time.strftime('%Y%m%d-%H%M%S')}"
            shutil.copytree(out, dest, ignore=shutil.ignore_patterns("test-tmp"))
        # Let this run's daemon and embedded server go before the next run starts.
        time.sleep(6)
        return {"runner": runner, "passed": passed, "failed": failed, "unsupported": unsupported,
                "total": total, "wall_seconds": int(wall.group(1)) if wall else round(elapsed),
                "tags": tags or "all", "jobs": jobs, "load": round(os.getloadavg()[0], 2),
                "per_test": per_test}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(RUNNERS), help="one of the two default runners")
    parser.add_argument("--runner", action="append", help="a runner command line (repeatable; replaces the defaults)")
    parser.add_argument("--tags", help="only tests with these tags (comma separated)")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="runs per runner (the median wall time is shown)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per suite run")
    parser.add_argument("--keep", type=Path, help="keep each run's output folder (junit.xml...) under this folder")
    args = parser.parse_args(argv)
    if not (SHARED / "cwl-v1.2" / "conformance_tests.yaml").exists():
        print(f"the conformance suite is not at {SHARED / 'cwl-v1.2'}", file=sys.stderr)
        return 2
    runners = args.runner or ([RUNNERS[args.only]] if args.only else list(RUNNERS.values()))
    missing = [r for r in runners if shutil.which(r.split()[0]) is None]
    if missing:
        print(f"not on PATH: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = []
    for _ in range(args.repeat):
        for runner in runners:  # alternate the runners between repeats
            result = run_suite(runner, args.jobs, args.tags, args.timeout, args.keep)
            results.append(result)
            print(f"{runner:<40} {result['passed']}/{result['total']} passed, {result['failed']} failed, "
                  f"{result['unsupported']} unsupported, {result['wall_seconds']} s (load {result['load']})",
                  flush=True)
            per_test: dict[str, Any] = result["per_test"]  # type: ignore[assignment]
            if per_test:
                print(f"    summed {per_test['summed_s']} s over {per_test['tests']} tests; "
                      f"{per_test['sleeping_tests']} sleeping tests {per_test['sleeping_s']} s; the others: "
                      f"mean {per_test['ordinary_mean_s']} s, median {per_test['ordinary_median_s']} s, "
                      f"p90 {per_test['ordinary_p90_s']} s; -j {args.jobs} makespan of these times "
                      f"{per_test['makespan_s']} s")
                print("    slowest others: " + ", ".join(f"{t} {s} s" for t, s in per_test["slowest"]))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    for runner in runners:
        walls = [int(str(r["wall_seconds"])) for r in results if r["runner"] == runner]
        print(f"median {runner:<33} {statistics.median(walls):.0f} s over {len(walls)} run(s)")
    dest = ROOT / "bench" / "results"
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"conformance-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
