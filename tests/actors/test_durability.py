"""Durable execution: crash at deterministic points and at random moments, resume, rerun, cancel.

Every test runs the real CLI in subprocesses against a real nats-server. Side effects are
counted in a directory outside the job directories, so "a completed job never runs
again" is checked on the real executions, not on the log alone.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli

DATA = Path(__file__).resolve().parents[1] / "data" / "durability"
ITEMS = ["a", "b", "c", "d", "e", "f"]

pytestmark = pytest.mark.slow


def _job(tmp_path: Path, *, flag: bool = True, delay: float = 0.2) -> tuple[Path, Path, Path]:
    counter = tmp_path / "counter"
    counter.mkdir(exist_ok=True)
    flag_path = tmp_path / "flag"
    if flag:
        flag_path.write_text("ok")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"items": ITEMS, "counter": str(counter), "flag": str(flag_path), "delay": delay}))
    return job, counter, flag_path


def _counts(counter: Path) -> dict[str, int]:
    return {p.name: len(p.read_text().splitlines()) for p in counter.iterdir()}


def _events(run_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_cli(["events", run_id, "--json"], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _assert_log_sound(events: list[dict[str, Any]]) -> None:
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was recorded twice"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    completed: dict[tuple[str, int], int] = {}
    for e in events:
        if e["type"] == "JobCompleted":
            key = (e["job"], e["attempt"])
            completed[key] = completed.get(key, 0) + 1
    assert all(n == 1 for n in completed.values()), f"a job attempt completed twice: {completed}"


def _expected_output(tmp_path: Path) -> str:
    return "".join(f"{item}\n" for item in ITEMS)


@pytest.mark.parametrize("point", [
    "JobRequested:3", "JobScheduled:2", "InputsStaged:2", "JobStarted:2", "JobCompleted:3",
    "DataLocationsRegistered:2", "TokenEmitted:4", "StepTerminated:3", "PortTerminated:3",
])
def test_crash_point_then_resume_completes_without_rerunning_completed_jobs(
        point: str, tmp_path: Path, sf_env: dict[str, str]) -> None:
    """SIGKILL right after an event type is appended; `resume` finishes the run; no completed job runs twice."""
    job, counter, _ = _job(tmp_path)
    run_id = "crash" + point.split(":")[0].lower()[:12] + str(os.getpid() % 1000)
    env = dict(sf_env, STREAMFLOW_CRASH_AFTER=point)
    first = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                     str(job)], env)
    assert first.returncode == -signal.SIGKILL, (first.returncode, first.stderr)
    before = {e["job"] for e in _events(run_id, sf_env) if e["type"] == "JobCompleted"}
    counts_before = _counts(counter)
    resumed = run_cli(["resume", run_id], sf_env)
    assert resumed.returncode == 0, resumed.stderr
    outputs = json.loads(resumed.stdout)
    assert Path(outputs["all"]["path"]).read_text() == _expected_output(tmp_path)
    events = _events(run_id, sf_env)
    _assert_log_sound(events)
    assert [e["type"] for e in events].count("RunResumed") == 1
    assert events[-1]["type"] == "RunCompleted"
    counts = _counts(counter)
    # Every item ran at least once; an item completed before the crash never ran again.
    assert set(counts) >= set(ITEMS)
    for item in ITEMS:
        assert counts[item] <= 2
    completed_items = {e["outputs"]["out"]["path"] for e in events if e["type"] == "JobCompleted" and e["job"] in before
                       and "out" in (e.get("outputs") or {})}
    for path in completed_items:
        item = Path(path).read_text().strip()
        assert counts[item] == counts_before[item] == 1


def test_random_kills_then_resume_until_done(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A bounded loop of SIGKILLs at random moments; repeated `resume` ends with the same outputs."""
    rng = random.Random(20261128)
    job, counter, _ = _job(tmp_path, delay=0.3)
    run_id = f"random{os.getpid() % 10000}"
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    args = ["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"), str(job)]
    kills = 0
    for attempt in range(4):
        proc = subprocess.Popen([sys.executable, "-c", code, *args], env=sf_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0.8, 2.0)
        try:
            proc.communicate(timeout=delay)
            if proc.returncode == 0:
                break
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
        args = ["resume", run_id]
        assert attempt < 3 or kills
    final = run_cli(["resume", run_id], sf_env)
    assert final.returncode == 0, final.stderr
    assert Path(json.loads(final.stdout)["all"]["path"]).read_text() == _expected_output(tmp_path)
    _assert_log_sound(_events(run_id, sf_env))
    assert all(n <= kills + 1 for n in _counts(counter).values())


def test_rerun_reuses_completed_jobs_and_runs_the_failed_step(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A run fails in its last step; after fixing the cause, `rerun` reuses the scatter and runs only the rest."""
    job, counter, flag = _job(tmp_path, flag=False)
    run_id = f"fails{os.getpid() % 10000}"
    failed = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                      str(job)], sf_env)
    assert failed.returncode == 1, failed.stderr
    assert "combine" in failed.stderr
    flag.write_text("fixed")
    rerun = run_cli(["rerun", run_id, "--run-id", run_id + "b"], sf_env)
    assert rerun.returncode == 0, rerun.stderr
    assert Path(json.loads(rerun.stdout)["all"]["path"]).read_text() == _expected_output(tmp_path)
    counts = _counts(counter)
    assert all(counts[item] == 1 for item in ITEMS), counts
    assert counts["flaky"] == 2
    events = _events(run_id + "b", sf_env)
    assert events[0]["type"] == "RunSubmitted" and events[0]["rerun_of"] == run_id
    assert sum(e["type"] == "JobReused" for e in events) == len(ITEMS)
    old = _events(run_id, sf_env)
    assert [e["type"] for e in old].count("RunFailed") == 1
    assert not any(e["type"] == "JobReused" for e in old), "the old log was rewritten"


def test_cancel_records_cancelled_and_resume_completes(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """`streamflow cancel` stops a live run with RunCancelled; `resume` then completes it."""
    job, _, _ = _job(tmp_path, delay=1.0)
    run_id = f"cancel{os.getpid() % 10000}"
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--run-id", run_id, "--outdir", str(tmp_path / "out"),
                             str(DATA / "pipeline.cwl"), str(job)], env=sf_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if any(e["type"] == "JobStarted" for e in _safe_events(run_id, sf_env)):
            break
        time.sleep(0.2)
    cancelled = run_cli(["cancel", run_id], sf_env)
    assert cancelled.returncode == 0, cancelled.stderr
    proc.communicate(timeout=60)
    assert proc.returncode == 1
    events = _events(run_id, sf_env)
    assert events[-1]["type"] == "RunCancelled"
    status = json.loads(run_cli(["status", run_id, "--json"], sf_env).stdout)
    assert status["status"] == "CANCELLED"
    resumed = run_cli(["resume", run_id], sf_env)
    assert resumed.returncode == 0, resumed.stderr
    _assert_log_sound(_events(run_id, sf_env))


def test_resume_of_a_live_run_is_refused(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """While a process hosts a run (and renews its lease), `resume` exits 2 and names the holder."""
    job, _, _ = _job(tmp_path, delay=2.0)
    run_id = f"live{os.getpid() % 10000}"
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--run-id", run_id, "--outdir", str(tmp_path / "out"),
                             str(DATA / "pipeline.cwl"), str(job)], env=sf_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
                e["type"] == "RunStarted" for e in _safe_events(run_id, sf_env)):
            time.sleep(0.2)
        refused = run_cli(["resume", run_id], sf_env)
        assert refused.returncode == 2
        assert "live" in refused.stderr
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0


def test_resume_after_killing_engine_and_embedded_bus(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """SIGKILL of the engine and of the embedded nats-server: the next command restarts it on the same store."""
    env = {k: v for k, v in sf_env.items() if not k.startswith("STREAMFLOW_NATS")}
    env["STREAMFLOW_HOME"] = str(tmp_path / "home")
    job, _, _ = _job(tmp_path)
    run_id = f"buskill{os.getpid() % 10000}"
    first = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                     str(job)], dict(env, STREAMFLOW_CRASH_AFTER="JobCompleted:2"))
    assert first.returncode == -signal.SIGKILL
    info = json.loads((tmp_path / "home" / "nats" / "server.json").read_text())
    os.kill(int(info["pid"]), signal.SIGKILL)
    resumed = run_cli(["resume", run_id], env)
    assert resumed.returncode == 0, resumed.stderr
    assert Path(json.loads(resumed.stdout)["all"]["path"]).read_text() == _expected_output(tmp_path)
    events = _events(run_id, env)
    _assert_log_sound(events)
    assert sum(e["type"] == "JobCompleted" for e in events) == len(ITEMS) + 1


def _safe_events(run_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_cli(["events", run_id, "--json"], env)
    if result.returncode != 0:
        return []
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_lost_intermediate_file_rolls_back_its_producer(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """Deleting an intermediate output before its consumer is staged re-runs the producer, found by provenance."""
    counter = tmp_path / "counter"
    counter.mkdir()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"counter": str(counter), "pause": 3}))
    run_id = f"lost{os.getpid() % 10000}"
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--run-id", run_id, "--outdir", str(tmp_path / "out"),
                             str(DATA / "lost.cwl"), str(job)], env=sf_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    produced: str | None = None
    deadline = time.monotonic() + 30
    while produced is None and time.monotonic() < deadline:
        for e in _safe_events(run_id, sf_env):
            if e["type"] == "JobCompleted" and "data" in (e.get("outputs") or {}):
                produced = e["outputs"]["data"]["path"]
        time.sleep(0.1)
    assert produced is not None, "the producer never completed"
    os.unlink(produced)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)["result"]
    assert Path(result["path"]).read_text() == "data\ndone\n"
    assert _counts(counter)["produce"] == 2
    types = [e["type"] for e in _events(run_id, sf_env)]
    assert types.index("InputsLost") < types.index("JobRollback") < len(types) - 1
    _assert_log_sound(_events(run_id, sf_env))


def test_resume_starts_from_the_latest_snapshot(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """With snapshots every 40 events, a resumed run restores the latest one and folds only what follows."""
    items = [f"i{n}" for n in range(30)]
    counter = tmp_path / "counter"
    counter.mkdir()
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"items": items, "counter": str(counter), "flag": str(tmp_path / "flag"), "delay": 0}))
    (tmp_path / "flag").write_text("ok")
    run_id = f"snap{os.getpid() % 10000}"
    env = dict(sf_env, STREAMFLOW_SNAPSHOT_EVERY="40")
    first = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"),
                     str(job)], dict(env, STREAMFLOW_CRASH_AFTER="JobCompleted:20"))
    assert first.returncode == -signal.SIGKILL
    checkpoints = [e for e in _events(run_id, sf_env) if e["type"] == "CheckpointTaken"]
    assert checkpoints, "no snapshot was taken"
    resumed = run_cli(["resume", "--debug", run_id], env)
    assert resumed.returncode == 0, resumed.stderr
    restored = [json.loads(line) for line in resumed.stderr.splitlines() if "snapshot_restored" in line]
    # One snapshot per actor group, stored one after the other: the crash may fall between two
    # groups' snapshots (or between a snapshot and its CheckpointTaken). Each group restores
    # its latest, and reading resumes after the oldest of those.
    latest: dict[str, int] = {}
    for checkpoint in checkpoints:
        latest[checkpoint["key"]] = max(latest.get(checkpoint["key"], 0), checkpoint["last_seq"])
    assert restored and min(latest.values()) <= restored[0]["last_seq"] <= max(latest.values())
    text = Path(json.loads(resumed.stdout)["all"]["path"]).read_text()
    assert text == "".join(f"{item}\n" for item in items)
    _assert_log_sound(_events(run_id, sf_env))
    assert all(n <= 2 for name, n in _counts(counter).items() if name != "flaky")
