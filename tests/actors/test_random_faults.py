"""A seeded random sequence of faults around one run; the log's invariants are checked after each.

Actions, in a seeded order and at seeded moments: start (``run``, then ``resume``) and SIGKILL
the engine; start and ``cancel`` it; start it and try a second host of its step actors
(``host --actors steps``, which its leases must refuse); kill the nats-server under it and
start it again on the same store; start an agent beside it and SIGKILL the agent; then let
the run finish with ``resume``.
After every action: every event id is unique and the run's sequence is gapless, no job
attempt completed twice and no job was counted completed twice, a job completed before the
action was not run again (its side-effect counter did not move), and every output file of a
completed job still has the checksum its ``JobCompleted`` recorded. Real processes and a real
nats-server of the test's own.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamflow.bus import EmbeddedServer
from tests.actors.test_durability import DATA, _assert_log_sound, _counts, _events, _expected_output, _job
from tests.conftest import cli_env, run_cli, running_server

pytestmark = pytest.mark.slow

SEED = 20261202
CODE = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CODE, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_submitted(run_id: str, env: dict[str, str], proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until the run is in the log (however loaded the machine, the faults start after that)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run_cli(["status", run_id, "--json"], env).returncode == 0:
            return
        assert proc.poll() is None, f"the run ended before it was submitted: {proc.communicate()[1][-2000:]}"
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} was not submitted within {timeout}s")


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


@pytest.fixture
def private_bus(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server of this test's own, which the test kills and restarts."""
    yield from running_server(tmp_path / "bus" / "jetstream")


def test_random_faults_keep_the_log_sound(tmp_path: Path, private_bus: EmbeddedServer) -> None:
    rng = random.Random(SEED)
    env = {**cli_env(tmp_path, private_bus), "STREAMFLOW_ACK_WAIT": "2"}
    job, counter, _ = _job(tmp_path, delay=1.0)
    run_id = f"faults{os.getpid() % 10000}"
    args = ["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(DATA / "pipeline.cwl"), str(job)]
    done: set[str] = set()
    history: list[str] = []
    finished = False
    out = ""
    plan = ["kill", "kill", "cancel", "cancel", "host", "host", "bus", "agent"]
    rng.shuffle(plan)  # every kind of fault, in a seeded order and at seeded moments
    for action in [*plan, "finish"]:
        history.append(action)
        before = _counts(counter) if counter.exists() else {}
        proc = _start(args, env)
        if action == "finish":
            out, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, f"{history}: {err[-3000:]}"
            finished = True
        else:
            agent = _start(["agent", "--workers", "1", "--name", "chaos"], env) if action == "agent" else None
            if len(history) == 1:
                _wait_submitted(run_id, env, proc)  # a fault before the run exists leaves nothing to resume
            time.sleep(rng.uniform(0.6, 2.0))
            if action == "cancel":
                cancel = run_cli(["cancel", run_id], env, timeout=60)
                assert cancel.returncode in (0, 1, 2), cancel.stderr  # 2: over already; 1: not answering
            elif action == "host":
                second = run_cli(["host", run_id, "--actors", "steps", "--wait", "5"], env, timeout=60)
                if proc.poll() is None:  # the run is live: its leases refuse a second set of steps
                    assert second.returncode != 0, f"a second host of the steps was accepted: {second.stderr}"
            elif action == "bus":  # the bus dies and comes back on the same store, address and token
                private_bus.kill()
                time.sleep(rng.uniform(0.2, 1.0))
                private_bus.start()
                time.sleep(rng.uniform(0.5, 1.5))
            elif agent is not None:  # an agent that took a job dies with it
                time.sleep(rng.uniform(0.2, 1.0))
                agent.send_signal(signal.SIGKILL)
                agent.communicate(timeout=30)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=60)
        events = _events(run_id, env)
        try:
            done = _check(events, before, _counts(counter), done)
        except (AssertionError, OSError) as exc:
            raise AssertionError(f"after {history}: {exc}") from exc
        args = ["resume", run_id]
        if finished:
            break
    events = _events(run_id, env)
    _check(events, {}, {}, set())
    final_event = [e for e in events if e["type"] == "RunCompleted"][-1]
    assert Path(final_event["outputs"]["all"]["path"]).read_text() == _expected_output(tmp_path), history
    assert out
