"""A step bound to a ``docker`` deployment runs in a container, through the engine's path.

A real rootful Podman (the session's, from ``tests/backends/podman.py``) serves the Docker
API; the image is built locally from busybox. The job's input is sent into the container by
the DataManager, the command runs there (``docker exec``), and its output comes back.
"""

from __future__ import annotations

import json
from pathlib import Path

from ruamel.yaml import YAML

from streamflow.bus import EmbeddedServer
from tests.backends.podman import PodmanInfo, podman  # noqa: F401  (the session's Podman)
from tests.conftest import cli_env, run_cli

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
inputs:
  text: {type: File, inputBinding: {position: 1}}
baseCommand: [sh, -c, 'wc -c < "$1" > size.txt; cat /etc/os-release 2>/dev/null | head -1 > os.txt; true', sh]
outputs:
  size: {type: File, outputBinding: {glob: size.txt}}
  os: {type: File, outputBinding: {glob: os.txt}}
"""


def test_step_bound_to_a_docker_deployment_runs_in_its_container(
        tmp_path: Path, podman: PodmanInfo, nats_server: EmbeddedServer) -> None:  # noqa: F811
    (tmp_path / "tool.cwl").write_text(TOOL)
    (tmp_path / "text.txt").write_text("twelve bytes")
    (tmp_path / "job.yml").write_text("text: {class: File, path: text.txt}\n")
    config = {
        "version": "v1.0",
        "workflows": {"w": {"type": "cwl", "config": {"file": "tool.cwl", "settings": "job.yml"},
                            "bindings": [{"step": "/", "target": {"deployment": "box"}}]}},
        "deployments": {"box": {"type": "docker", "workdir": "/tmp/sf",
                                "config": {"image": podman.image, "dockerHost": podman.docker_host}}},
    }
    with (tmp_path / "streamflow.yml").open("w") as handle:
        YAML().dump(config, handle)
    env = {**cli_env(tmp_path, nats_server), **podman.env}
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), str(tmp_path / "streamflow.yml")], env, timeout=180)
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = json.loads(result.stdout)
    assert Path(outputs["size"]["path"]).read_text().strip() == "12"
    # busybox has no /etc/os-release, the host does: the command ran in the container.
    assert Path(outputs["os"]["path"]).read_text() == ""
    events = run_cli(["events", result.stderr.split()[2], "--json"], env)
    kinds = [json.loads(line).get("type") for line in events.stdout.splitlines()]
    assert "DataTransferred" in kinds and "DeploymentUndeployed" in kinds
