"""Fixtures of the CLI observability tests: a small real workflow run through ``streamflow run``."""

from __future__ import annotations

import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import run_cli

ECHO_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
stdout: out.txt
inputs:
  message:
    type: string
    inputBinding: {position: 1}
outputs:
  out:
    type: stdout
"""

SCATTER_WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  messages: string[]
outputs:
  outs:
    type: File[]
    outputSource: echo/out
steps:
  echo:
    run: echo.cwl
    scatter: message
    in: {message: messages}
    out: [out]
"""

FAILING_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: ["sh", "-c", "exit 3"]
inputs: []
outputs: []
"""


@dataclass(frozen=True)
class FinishedRun:
    """A run that ``streamflow run`` finished: its id, environment and directories."""

    run_id: str
    env: dict[str, str]
    root: Path
    outdir: Path
    returncode: int


def run_workflow(tmp_path: Path, env: dict[str, str], *, failing: bool = False) -> FinishedRun:
    """Write the tiny workflow (three scattered echo jobs, or one failing tool) and run it."""
    (tmp_path / "echo.cwl").write_text(ECHO_TOOL)
    (tmp_path / "wf.cwl").write_text(SCATTER_WORKFLOW)
    (tmp_path / "fail.cwl").write_text(FAILING_TOOL)
    (tmp_path / "job.yml").write_text(textwrap.dedent("""\
        messages: [alpha, beta, gamma]
    """))
    run_id = f"t{uuid.uuid4().hex[:12]}"
    outdir = tmp_path / "out"
    args = ["run", "--quiet", "--run-id", run_id, "--outdir", str(outdir)]
    args += [str(tmp_path / "fail.cwl")] if failing else [str(tmp_path / "wf.cwl"), str(tmp_path / "job.yml")]
    result = run_cli(args, env, cwd=tmp_path)
    if not failing:
        assert result.returncode == 0, result.stderr
    return FinishedRun(run_id, env, tmp_path, outdir, result.returncode)


@pytest.fixture
def finished_run(tmp_path: Path, sf_env: dict[str, str]) -> FinishedRun:
    """A completed run of a three-job scatter workflow."""
    return run_workflow(tmp_path, sf_env)
