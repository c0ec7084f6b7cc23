"""Values too large for the bus's messages end cleanly (issue 14, point 6).

A 5 MB string input is refused up front (exit 2, nothing written); a 4 MB
``cwl.output.json`` makes the job fail (not retried) naming the output and the limit, and
the run ends, instead of a traceback and a run that every ``resume`` crashes on.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from events.schema import JobCompleted, JobFailed
from streamflow.data.limits import event_limit, fit_job_result
from tests.conftest import run_cli

ECHO = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [wc, -c]
inputs:
  big: {type: string, inputBinding: {position: 1}}
stdout: out.txt
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""

HUGE_OUTPUT = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [{python}, -c, "import json; json.dump({{'huge': 'x' * 4200000}}, open('cwl.output.json', 'w'))"]
inputs: []
outputs:
  huge: string
"""


def test_limit_is_the_smaller_of_the_stream_and_the_server() -> None:
    assert event_limit(1024 * 1024) < event_limit(8 * 1024 * 1024) == event_limit(None)
    small = JobCompleted(job="j", outputs={"a": "x" * 100})
    assert fit_job_result(small, None) is small
    big = JobCompleted(job="j", outputs={"a": "x", "b": "y" * (5 * 1024 * 1024)})
    failed = fit_job_result(big, None)
    assert isinstance(failed, JobFailed) and not failed.retryable and "'b'" in failed.error


def test_a_5mb_string_input_is_refused_up_front(tmp_path: Path, sf_env: dict[str, str]) -> None:
    tool = tmp_path / "echo.cwl"
    tool.write_text(ECHO)
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"big": "x" * 5_000_000}))
    result = run_cli(["run", "--run-id", "bigin", "--outdir", str(tmp_path / "out"), str(tool), str(job)], sf_env,
                     timeout=120)
    assert result.returncode == 2, result.stderr
    assert "input 'big'" in result.stderr and "limited to" in result.stderr
    assert "Traceback" not in result.stderr
    listed = run_cli(["status", "bigin"], sf_env, timeout=60)
    assert listed.returncode == 2  # nothing was written: no such run


def test_a_4mb_output_fails_the_job_cleanly_and_the_run_ends(tmp_path: Path, sf_env: dict[str, str]) -> None:
    tool = tmp_path / "huge.cwl"
    tool.write_text(HUGE_OUTPUT.format(python=json.dumps(sys.executable)))
    result = run_cli(["run", "--run-id", "bigout", "--outdir", str(tmp_path / "out"), str(tool)], sf_env,
                     timeout=120)
    assert result.returncode == 1, result.stderr
    assert "output 'huge'" in result.stderr and "limited to" in result.stderr
    assert "Traceback" not in result.stderr
    events = [json.loads(line) for line in run_cli(["events", "bigout", "--json"], sf_env).stdout.splitlines()]
    failed = [e for e in events if e["type"] == "JobFailed"]
    assert len(failed) == 1 and failed[0]["retryable"] is False
    types = [e["type"] for e in events]
    assert "RunFailed" in types and "RunCompleted" not in types
