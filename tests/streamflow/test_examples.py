"""The shipped examples give the same outputs under ``streamflow run`` and the reference runner (cwltool)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, run_cli

EXAMPLES = [
    pytest.param("wordcount/wordcount.cwl", "wordcount/job.yml", id="wordcount"),
    pytest.param("pipeline/pipeline.cwl", "pipeline/job.yml", id="pipeline"),
]


def comparable(value: Any) -> Any:
    """What must agree between runners: Files by basename, size, checksum (and secondaries); Directories by listing."""
    if isinstance(value, list):
        return [comparable(v) for v in value]
    if not isinstance(value, dict):
        return value
    cls = value.get("class")
    if cls == "File":
        result = {"class": "File", "basename": value["basename"], "size": value["size"],
                  "checksum": value["checksum"]}
        if value.get("secondaryFiles"):
            result["secondaryFiles"] = sorted((comparable(s) for s in value["secondaryFiles"]),
                                              key=lambda f: f["basename"])
        return result
    if cls == "Directory":
        listing = sorted((comparable(v) for v in value.get("listing") or []), key=lambda f: f["basename"])
        return {"class": "Directory", "basename": value["basename"], "listing": listing}
    return {k: comparable(v) for k, v in value.items()}


def _cwltool() -> str:
    found = shutil.which("cwltool", path=str(Path(sys.executable).parent)) or shutil.which("cwltool")
    if found is None:
        pytest.skip("cwltool is not installed (pip install cwltool) — no reference outputs to compare with")
    return found


@pytest.mark.parametrize(("workflow", "job"), EXAMPLES)
def test_example_outputs_match_cwltool(workflow: str, job: str, tmp_path: Path, sf_env: dict[str, str]) -> None:
    """``streamflow run`` and ``cwltool --no-container`` produce the same output object."""
    cwltool = _cwltool()
    examples = REPO / "examples"
    ours = run_cli(["run", "--quiet", "--outdir", str(tmp_path / "sf"), str(examples / workflow),
                    str(examples / job)], sf_env, cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run([cwltool, "--quiet", "--no-container", "--outdir", str(tmp_path / "cwltool"),
                             str(examples / workflow), str(examples / job)], cwd=tmp_path, env=sf_env,
                            capture_output=True, text=True, timeout=120, check=False)
    assert theirs.returncode == 0, theirs.stderr
    assert comparable(json.loads(ours.stdout)) == comparable(json.loads(theirs.stdout))
