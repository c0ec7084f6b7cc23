"""Deployment lifecycle through the engine: eager deployments, and a deployment that cannot come up."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from tests.conftest import run_cli

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [echo, hello]
inputs: []
stdout: out.txt
outputs:
  out: stdout
"""


def _write(tmp_path: Path, deployments: dict[str, Any], bound: str) -> Path:
    (tmp_path / "tool.cwl").write_text(TOOL)
    config = {"version": "v1.0",
              "workflows": {"w": {"type": "cwl", "config": {"file": "tool.cwl"},
                                  "bindings": [{"step": "/", "target": {"deployment": bound}}]}},
              "deployments": deployments}
    path = tmp_path / "streamflow.yml"
    with path.open("w") as handle:
        YAML().dump(config, handle)
    return path


def _events(stderr: str, env: dict[str, str]) -> list[dict[str, Any]]:
    run_id = stderr.split()[2]
    result = run_cli(["events", run_id, "--json"], env)
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_an_eager_deployment_is_deployed_even_if_no_job_uses_it(tmp_path: Path, sf_env: dict[str, str]) -> None:
    config = _write(tmp_path, {"used": {"type": "local", "config": {}},
                               "spare": {"type": "local", "config": {}, "lazy": False}}, "used")
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), str(config)], sf_env, timeout=120)
    assert result.returncode == 0, result.stderr
    events = _events(result.stderr, sf_env)
    deployed = {e["deployment"] for e in events if e.get("type") == "DeploymentDeployed"}
    undeployed = {e["deployment"] for e in events if e.get("type") == "DeploymentUndeployed"}
    assert deployed == undeployed == {"used", "spare"}


def test_a_deployment_that_cannot_come_up_fails_the_run_naming_it(tmp_path: Path, sf_env: dict[str, str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _write(tmp_path, {"far": {"type": "ssh", "config": {
        "nodes": ["127.0.0.1"], "port": port, "username": "nobody", "retries": 1, "retryDelay": 0.1,
        "checkHostKey": False}}}, "far")
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), str(config)], sf_env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "deployment 'far' could not be deployed" in result.stderr
    assert "Traceback" not in result.stderr
    failed = [e for e in _events(result.stderr, sf_env) if e.get("type") == "DeploymentFailed"]
    assert [e["deployment"] for e in failed] == ["far"] and failed[0]["error"]
