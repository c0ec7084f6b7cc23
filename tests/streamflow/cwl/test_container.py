"""DockerRequirement: in a container where an engine answers, on the host (with a warning) where none does."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from streamflow.cwl import container
from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.loader import LoadedDocument
from streamflow.cwl.tool import execute_process, resolve_requirements
from streamflow.errors import UnsupportedRequirementError
from tests.backends.podman import PodmanInfo, podman  # noqa: F401  (the session's Podman)

WriteTool = Callable[..., LoadedDocument]

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  DockerRequirement: {dockerPull: "docker.io/library/alpine:3.20"}
  ShellCommandRequirement: {}
inputs:
  data: File
arguments:
  - {valueFrom: "cat $(inputs.data.path) > out.txt; (grep -h '^ID=' /etc/os-release || echo ID=none) >> out.txt",
     shellQuote: false}
outputs:
  out:
    type: File
    outputBinding: {glob: out.txt}
"""


@pytest.fixture
def engine_choice(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set STREAMFLOW_CONTAINER_ENGINE for this test (the module caches its answer)."""

    def choose(value: str) -> None:
        monkeypatch.setenv("STREAMFLOW_CONTAINER_ENGINE", value)
        monkeypatch.setattr(container, "_engine", None)
        monkeypatch.setattr(container, "_warned", False)

    yield choose


async def _run(doc: LoadedDocument, tmp_path: Path) -> dict[str, Any]:
    data = tmp_path / "in" / "data.txt"
    data.parent.mkdir()
    data.write_text("payload\n")
    reqs, hints = resolve_requirements(doc.process, [], [])
    inputs = fill_and_validate_inputs(doc.process, {"data": {"class": "File", "path": str(data)}},
                                      requirements=reqs, hints=hints, base_dir=str(tmp_path))
    return await execute_process(doc.process, inputs, requirements=reqs, hints=hints, outdir=str(tmp_path / "out"),
                                 tmpdir=str(tmp_path / "tmp"), cwl_version=doc.cwl_version)


def test_container_command_mounts_paths_at_their_own_names() -> None:
    argv, name = container.container_command(
        "/usr/bin/docker", "alpine:3.20", ["cat", "/data/in/a.txt"], outdir="/jobs/1/out", tmpdir="/jobs/1/tmp",
        environment={"HOME": "/jobs/1/out", "TMPDIR": "/jobs/1/tmp"},
        inputs=["/data/in/a.txt", "/data/in", "/data/in-other/b.txt", "/jobs/1/out/staged.txt"],
        container_outdir="/var/spool/cwl", stdin=True)
    assert argv[:5] == ["/usr/bin/docker", "run", "--rm", "--name", name] and name.startswith("streamflow-")
    assert argv[-3:] == ["alpine:3.20", "cat", "/data/in/a.txt"]  # the command is not rewritten
    pairs = list(itertools.pairwise(argv))
    volumes = [value for flag, value in pairs if flag == "--volume"]
    assert volumes == ["/jobs/1/out:/jobs/1/out:rw", "/jobs/1/tmp:/jobs/1/tmp:rw", "/jobs/1/out:/var/spool/cwl:rw",
                       "/data/in:/data/in:ro", "/data/in-other/b.txt:/data/in-other/b.txt:ro"]
    assert ("--workdir", "/var/spool/cwl") in pairs and ("--network", "none") in pairs
    assert ("--user", f"{os.getuid()}:{os.getgid()}") in pairs and "--interactive" in argv
    assert ("--env", "HOME=/jobs/1/out") in pairs
    opened, _ = container.container_command("/usr/bin/podman", "x", ["true"], outdir="/o", tmpdir="/t",
                                            environment={}, network=True)
    assert ("--network", "bridge") in list(itertools.pairwise(opened)) and "--interactive" not in opened
    assert container.kill_command("/usr/bin/docker", name) == ["/usr/bin/docker", "kill", name]


def test_only_pulled_or_named_images_are_supported() -> None:
    assert container.image_of({"dockerPull": "alpine"}) == "alpine"
    assert container.image_of({"dockerImageId": "sha256:abc"}) == "sha256:abc"
    with pytest.raises(UnsupportedRequirementError, match="dockerFile"):
        container.image_of({"dockerFile": "FROM alpine"})


async def test_without_an_engine_the_tool_runs_on_the_host_with_a_warning(
        write_tool: WriteTool, tmp_path: Path, engine_choice: Callable[[str], None]) -> None:
    engine_choice("none")
    assert container.engine() is None and container.engine("none") is None
    with capture_logs() as logs:
        outputs = await _run(write_tool(TOOL), tmp_path)
        (tmp_path / "again").mkdir()
        await _run(write_tool(TOOL), tmp_path / "again")
    text = Path(outputs["out"]["path"]).read_text()
    assert text.startswith("payload\n")
    warnings = [entry for entry in logs if entry["event"] == "no_container_engine"]
    assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"  # once per process


async def test_with_an_engine_the_tool_runs_in_the_container(
        write_tool: WriteTool, tmp_path: Path, engine_choice: Callable[[str], None],
        podman: PodmanInfo, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """A real Podman (started by the fixture) runs the tool in a locally built busybox image."""
    for key, value in podman.env.items():
        monkeypatch.setenv(key, value)
    engine_choice("podman")
    assert container.engine() is not None
    outputs = await _run(write_tool(TOOL.replace("docker.io/library/alpine:3.20", podman.image)), tmp_path)
    text = Path(outputs["out"]["path"]).read_text()
    # The input was mounted, and /etc/os-release is the image's (busybox has none; the host has one).
    assert text == "payload\nID=none\n", text
