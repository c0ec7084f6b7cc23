"""A seeded random sequence of faults around one run; the log's invariants are checked after each.

Actions, chosen by a seeded generator: start (``run``, then ``resume``) and SIGKILL the
engine after a random moment; start and ``cancel`` it; start it and try a second host of its
step actors (``host --actors steps``, which its leases must refuse); let it run to the end.
After every action: every event id is unique and the run's sequence is gapless, no job
attempt completed twice and no job was counted completed twice, a job completed before the
action was not run again (its side-effect counter did not move), and every output file of a
completed job still has the checksum its ``JobCompleted`` recorded. Real processes, a real
nats-server; the bus itself is killed in ``test_runner_daemon.py`` and the cluster tests.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.actors.test_durability import DATA, _assert_log_sound, _counts, _events, _expected_output, _job
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SEED = 20261202
STEPS = 7
CODE = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CODE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _sha1(path: str) -> str:
    return "sha1$" + hashlib.sha1(Path(path).read_bytes(), usedforsecurity=False).hexdigest()


def _counter_of(events: list[dict[str, Any]]) -> dict[str, str]:
    """job -> the counter file its executions append to (``mark`` jobs: their item; ``combine``: flaky)."""
    keys = {}
    for event in events:
        if event["type"] == "JobRequested":
            item = (event.get("inputs") or {}).get("item")
            keys[event["job"]] = item if isinstance(item, str) else "flaky"
    return keys


def _check(events: list[dict[str, Any]], counts_before: dict[str, int], counts_now: dict[str, int],
           done_before: set[str]) -> set[str]:
    """The invariants after one action; returns the jobs completed so far."""
    _assert_log_sound(events)
    completed = [e for e in events if e["type"] == "JobCompleted"]
    counted: dict[str, int] = {}
    for event in completed:
        counted[event["job"]] = counted.get(event["job"], 0) + 1
    assert all(n == 1 for n in counted.values()), f"a job was counted completed twice: {counted}"
    counters = _counter_of(events)
    for job in done_before:
        key = counters[job]
        assert counts_now.get(key, 0) == counts_before.get(key, 0), f"{job} ({key}) ran again after it completed"
    if any(e["type"] == "RunCompleted" for e in events):
        return set(counted)  # a completed run's job directories are removed (--leave-tmpdir keeps them)
    for event in completed:
        for value in (event.get("outputs") or {}).values():
            for obj in value if isinstance(value, list) else [value]:
                if isinstance(obj, dict) and obj.get("class") == "File" and obj.get("checksum"):
                    assert _sha1(obj["path"]) == obj["checksum"], f"{obj['path']} changed after its job completed"
    return set(counted)


def test_random_faults_keep_the_log_sound(tmp_path: Path, sf_env: dict[str, str]) -> None:
    rng = random.Random(SEED)
    job, counter, _ = _job(tmp_path, delay=1.0)
    run_id = f"faults{os.getpid() % 10000}"
    args = ["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"), str(job)]
    done: set[str] = set()
    history: list[str] = []
    finished = False
    plan = ["kill", "kill", "kill", "cancel", "cancel", "host", "host"]
    rng.shuffle(plan)  # every kind of fault, in a seeded order and at seeded moments
    for action in [*plan[:STEPS - 1], "finish"]:
        history.append(action)
        before = _counts(counter) if counter.exists() else {}
        proc = _start(args, sf_env)
        if action == "finish":
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err[-3000:]
            finished = True
        else:
            time.sleep(rng.uniform(0.6, 2.0))
            if action == "cancel":
                cancel = run_cli(["cancel", run_id], sf_env, timeout=60)
                assert cancel.returncode in (0, 2), cancel.stderr  # 2: the run was already over
            elif action == "host":
                second = run_cli(["host", run_id, "--actors", "steps", "--wait", "5"], sf_env, timeout=60)
                if proc.poll() is None:  # the run is live: its leases refuse a second set of steps
                    assert second.returncode != 0, f"a second host of the steps was accepted: {second.stderr}"
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        events = _events(run_id, sf_env)
        try:
            done = _check(events, before, _counts(counter), done)
        except (AssertionError, OSError) as exc:
            raise AssertionError(f"after {history}: {exc}") from exc
        args = ["resume", run_id]
        if finished:
            break
    if not finished:
        final = run_cli(["resume", run_id], sf_env, timeout=180)
        assert final.returncode == 0, f"{history}: {final.stderr[-3000:]}"
        out = final.stdout
    events = _events(run_id, sf_env)
    _check(events, {}, {}, set())
    final_event = [e for e in events if e["type"] == "RunCompleted"][-1]
    assert Path(final_event["outputs"]["all"]["path"]).read_text() == _expected_output(tmp_path), history
    assert out
