"""A job's processes end with the job and with the engine (issue 14, points 2 and 5).

Real CLI processes against the session's nats-server: the engine is SIGKILLed while a tool
runs, and a tool leaves a process in the background that writes after it "ended".
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import run_cli

SLOW = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
inputs:
  marks: string
arguments:
  - valueFrom: >-
      echo start >> out.txt; echo $$ >> $(inputs.marks)/pids; sleep 6;
      echo done >> out.txt; echo done >> $(inputs.marks)/done
    shellQuote: false
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""

STRAGGLER = """\
cwlVersion: v1.2
class: CommandLineTool
requirements: {ShellCommandRequirement: {}}
inputs:
  marks: string
arguments:
  - valueFrom: >-
      (sleep 1; echo late >> out.txt; echo late > $(inputs.marks)/late) </dev/null >/dev/null 2>&1 &
      echo early > out.txt
    shellQuote: false
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _events(run_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_cli(["events", run_id, "--json"], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_tool_dies_with_its_engine_and_resume_runs_in_a_new_directory(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """SIGKILL the engine mid-tool: the tool dies too (it never writes 'done'); `resume` runs the
    job again in a directory of its own, whose output is one clean run (start, done)."""
    marks = tmp_path / "marks"
    marks.mkdir()
    tool = tmp_path / "slow.cwl"
    tool.write_text(SLOW)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"marks": str(marks)}))
    run_id = f"orphan{os.getpid() % 10000}"
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    engine = subprocess.Popen([sys.executable, "-c", code, "run", "--run-id", run_id, "--outdir",
                               str(tmp_path / "out"), str(tool), str(job)], env=sf_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (marks / "pids").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (marks / "pids").exists(), "the tool never started"
        started = time.monotonic()
        tool_pid = int((marks / "pids").read_text().split()[0])
    finally:
        engine.send_signal(signal.SIGKILL)
        engine.wait()
    deadline = started + 5  # before the tool's own end (6 s), with room for a loaded machine
    while _alive(tool_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(tool_pid), "the tool outlived its engine"
    time.sleep(max(0.0, started + 6.5 - time.monotonic()))  # past the tool's sleep: an orphan would have written
    assert not (marks / "done").exists(), "the orphaned tool went on writing"
    resumed = run_cli(["resume", run_id], sf_env)
    assert resumed.returncode == 0, resumed.stderr
    delivered = Path(json.loads(resumed.stdout)["out"]["path"])
    assert delivered.read_text() == "start\ndone\n"
    workdirs = [e["workdir"] for e in _events(run_id, sf_env) if e["type"] == "JobStarted"]
    assert len(workdirs) == 2 and len(set(workdirs)) == 2, workdirs


def test_background_process_of_a_tool_cannot_change_delivered_outputs(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A tool forks a writer into the background and exits: the writer is killed with the job,
    and the delivered file keeps the content (and checksum) the log recorded."""
    marks = tmp_path / "marks"
    marks.mkdir()
    tool = tmp_path / "straggler.cwl"
    tool.write_text(STRAGGLER)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"marks": str(marks)}))
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), str(tool), str(job)], sf_env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["out"]
    time.sleep(2)  # the straggler would have written after 1 s
    delivered = Path(out["path"])
    assert delivered.read_text() == "early\n"
    assert out["checksum"] == "sha1$" + hashlib.sha1(delivered.read_bytes()).hexdigest()
    assert not (marks / "late").exists(), "the background process outlived its job"
