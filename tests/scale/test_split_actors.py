"""One run's actors split over two processes that talk only through the bus."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "wordcount"
CODE = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"


def test_run_with_scheduler_and_data_manager_in_another_process(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """`run --actors steps,ports,supervisor` + `host --actors scheduler,...` complete the run together."""
    run_id = "splitrun"
    host = subprocess.Popen([sys.executable, "-c", CODE, "host", run_id, "--actors",
                             "scheduler,data-manager,failure-manager", "--wait", "60"],
                            env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        result = run_cli(["run", "--run-id", run_id, "--actors", "steps,ports,supervisor", "--outdir",
                          str(tmp_path / "out"), str(EXAMPLE / "wordcount.cwl"), str(EXAMPLE / "job.yml")],
                         agent_env)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["total_lines"] == 16
        _, err = host.communicate(timeout=60)
        assert host.returncode == 0, err
    finally:
        if host.poll() is None:
            host.kill()
            host.communicate()
    events = [json.loads(line) for line in run_cli(["events", run_id, "--json"], agent_env).stdout.splitlines()]
    epochs: dict[str, set[int]] = {}
    for event in events:
        epochs.setdefault(event["actor"].split(":")[0], set()).add(event["epoch"])
    # Each actor group writes with the fencing epoch of its own lease (one per group, all distinct).
    groups = ("scheduler", "data-manager", "step", "port", "run")
    assert all(len(epochs[g]) == 1 for g in groups), epochs
    assert len({next(iter(epochs[g])) for g in groups}) == len(groups), epochs
    assert sum(e["type"] == "JobScheduled" for e in events) == sum(e["type"] == "JobRequested" for e in events)


def test_a_group_cannot_be_hosted_twice(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """While one process hosts a run's scheduler, a second `host` of the same group is refused (lease)."""
    run_id = "splitlease"
    data = REPO / "tests" / "data" / "durability"
    (tmp_path / "counter").mkdir()
    (tmp_path / "flag").write_text("ok")
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"items": ["a", "b", "c", "d"], "counter": str(tmp_path / "counter"),
                               "flag": str(tmp_path / "flag"), "delay": 1.5}))
    first = subprocess.Popen([sys.executable, "-c", CODE, "host", run_id, "--actors", "scheduler", "--wait", "60"],
                             env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runner = subprocess.Popen([sys.executable, "-c", CODE, "run", "--run-id", run_id, "--actors",
                               "steps,ports,supervisor,data-manager,failure-manager", "--outdir", str(tmp_path / "o"),
                               str(data / "pipeline.cwl"), str(job)],
                              env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = run_cli(["events", run_id, "--json", "--type", "JobStarted"], agent_env)
            if listed.returncode == 0 and listed.stdout.strip():
                break
            time.sleep(0.2)
        second = run_cli(["host", run_id, "--actors", "scheduler", "--wait", "30"], agent_env)
        assert second.returncode == 2, second.stderr
        assert "live" in second.stderr
        runner.communicate(timeout=90)
        first.communicate(timeout=60)
        assert runner.returncode == 0 and first.returncode == 0
    finally:
        for proc in (first, runner):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
