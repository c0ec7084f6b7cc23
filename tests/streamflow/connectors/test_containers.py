"""Tests of the ``docker`` and ``docker-compose`` connectors against a real private Podman.

The ``docker`` CLI talks to Podman's Docker-compatible API socket (``dockerHost``); one test
drives the ``podman`` CLI instead. Containers are started once per module where the tests do
not change them (two replicas of the busybox image).
"""

# ruff: noqa: F811  (tests take the imported session fixture `podman` as an argument)
from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamflow.config import load_config
from streamflow.connectors.docker import DockerConnector
from streamflow.connectors.docker_compose import DockerComposeConnector, compose_client
from streamflow.connectors.local import LOCALHOST, LocalConnector
from streamflow.connectors.singularity import SingularityConnector, singularity_client
from streamflow.core.deployment import ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.deployment.manager import DefaultDeploymentManager
from streamflow.errors import ConfigError, DeploymentError, RemoteCommandError, TransferError
from streamflow.plugins import Registry
from tests.backends.podman import PodmanInfo, podman  # noqa: F401  (session fixture)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _docker(info: PodmanInfo, *args: str) -> subprocess.CompletedProcess[str]:
    cli = "docker" if shutil.which("docker") else "podman"  # podman: local mode, same storage
    return subprocess.run(
        [cli, *args],
        env={**os.environ, **info.env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _exists(info: PodmanInfo, name: str) -> bool:
    return _docker(info, "inspect", "--format", "{{.Name}}", name).returncode == 0


@pytest.fixture(scope="module")
def deployed(podman: PodmanInfo) -> Iterator[DockerConnector]:
    """A ``docker`` deployment of two busybox containers, for the tests that do not change it."""
    connector = DockerConnector("box", "/", image=podman.image, replicas=2, dockerHost=podman.docker_host)
    asyncio.run(connector.deploy(external=False))
    try:
        yield connector
    finally:
        asyncio.run(connector.undeploy(external=False))


@pytest.fixture
async def locations(deployed: DockerConnector) -> list[ExecutionLocation]:
    """The two locations of :func:`deployed`, by name order."""
    available = await deployed.get_available_locations()
    return [available[name].location for name in sorted(available)]


# --- schema and configuration ---------------------------------------------------------------------


def test_schema_requires_image_and_refuses_unknown_keys() -> None:
    """The schema is a valid draft 2020-12 schema with a description on every property."""
    schema = DockerConnector.get_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert all("description" in p for p in schema["properties"].values())
    assert validator.is_valid({"image": "busybox", "replicas": 2, "volume": ["a:/a"], "env": {"A": 1}})
    assert not validator.is_valid({})
    assert not validator.is_valid({"image": "busybox", "imagee": "x"})
    assert not validator.is_valid({"image": "busybox", "replicas": 0})


def test_run_argv_shape(tmp_path: Path) -> None:
    """`docker run -d` gets every option; relative volume sources are resolved against config_dir."""
    connector = DockerConnector(
        "d",
        str(tmp_path),
        image="img",
        name="c",
        env={"A": 1},
        volume=["./data:/data:ro"],
        volumes=["named:/v"],
        workdir="/w",
        network="none",
        user="1000",
        engine="docker",
    )
    argv = connector.run_argv("c")
    assert argv[:5] == ["docker", "run", "-d", "--name", "c"]
    assert argv[argv.index("-e") : argv.index("-e") + 2] == ["-e", "A=1"]
    assert f"{tmp_path}/data:/data:ro" in argv and "named:/v" in argv
    assert argv[argv.index("--entrypoint") + 1] == "sleep" and argv[-2:] == ["img", "infinity"]
    with_command = DockerConnector("d", "/", image="img", command="python -m http.server", engine="docker")
    assert with_command.run_argv("x")[-4:] == ["img", "python", "-m", "http.server"]
    assert "--entrypoint" not in with_command.run_argv("x")
    podman_cli = DockerConnector("d", "/", image="img", engine="podman", dockerHost="unix:///s")
    assert podman_cli.exec_argv(
        ExecutionLocation("c", "d"), ["true"], workdir="/w", environment={"K": "v"}
    ) == [
        "podman",
        "--url",
        "unix:///s",
        "exec",
        "-w",
        "/w",
        "-e",
        "K=v",
        "c",
        "true",
    ]


async def test_bad_config_and_unreachable_engine(tmp_path: Path) -> None:
    """replicas < 1 and external without a name are ConfigErrors; no engine is a DeploymentError."""
    with pytest.raises(ConfigError, match=r"'d'.*replicas"):
        DockerConnector("d", "/", image="img", replicas=0)
    with pytest.raises(ConfigError, match=r"'d'.*name"):
        await DockerConnector("d", "/", image="img").deploy(external=True)
    if shutil.which("docker") is None and shutil.which("podman") is None:
        pytest.skip("neither docker nor podman is installed")
    connector = DockerConnector("d", "/", image="img", dockerHost=f"unix://{tmp_path}/none.sock")
    with pytest.raises(DeploymentError, match=r"no (docker|podman) engine answers"):
        await connector.deploy(external=False)


# --- run ------------------------------------------------------------------------------------------


async def test_run_exit_codes_capture_env_workdir(
    deployed: DockerConnector, locations: list[ExecutionLocation]
) -> None:
    """Exit codes are results; output merges stderr; env and workdir apply; words are not a shell."""
    loc = locations[0]
    assert await deployed.run(loc, ["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True) == (
        "out\nerr",
        3,
    )
    assert await deployed.run(loc, ["true"]) == 0
    assert await deployed.run(loc, ["false"]) == 1
    assert await deployed.run(loc, ["echo", "$HOME; ls", "'q'"], capture_output=True) == ("$HOME; ls 'q'", 0)
    output = await deployed.run(
        loc,
        ["sh", "-c", 'echo "$PWD|$SF_X"'],
        environment={"SF_X": "a b$c"},
        workdir="/tmp",
        capture_output=True,
    )
    assert output == ("/tmp|a b$c", 0)
    output, code = await deployed.run(loc, ["no-such-program"], capture_output=True)  # type: ignore[misc]
    assert code == 127 and "no-such-program: not found" in output


async def test_run_missing_workdir_is_an_error(
    deployed: DockerConnector, locations: list[ExecutionLocation]
) -> None:
    """A working directory missing in the container raises RemoteCommandError, not an exit code."""
    with pytest.raises(RemoteCommandError):
        await deployed.run(locations[0], ["true"], workdir="/no/such/dir")


async def test_run_redirects_to_files_in_the_container(
    deployed: DockerConnector, locations: list[ExecutionLocation]
) -> None:
    """stdin/stdout/stderr are paths inside the container (parents created, relative to workdir)."""
    loc = locations[0]
    await deployed.run(loc, ["mkdir", "-p", "/tmp/r"])
    await deployed.run(loc, ["sh", "-c", "printf 'in put\\n' > /tmp/r/in.txt"])
    code = await deployed.run(
        loc,
        ["sh", "-c", "cat; echo e >&2; exit 4"],
        workdir="/tmp/r",
        stdin="in.txt",
        stdout="o u t/out.txt",
        stderr="/tmp/r/err.txt",
    )
    assert code == 4
    assert await deployed.run(loc, ["cat", "/tmp/r/o u t/out.txt"], capture_output=True) == ("in put", 0)
    assert await deployed.run(loc, ["cat", "/tmp/r/err.txt"], capture_output=True) == ("e", 0)
    # stderr=None merges into the stdout file; capture_output then returns ""
    result = await deployed.run(
        loc, ["sh", "-c", "echo a; echo b >&2"], stdout="/tmp/r/both.txt", capture_output=True
    )
    assert result == ("", 0)
    assert await deployed.run(loc, ["cat", "/tmp/r/both.txt"], capture_output=True) == ("a\nb", 0)
    assert await deployed.run(
        loc, ["sh", "-c", "echo a; echo b >&2"], stderr=subprocess.DEVNULL, capture_output=True
    ) == ("a", 0)


async def test_run_timeout_kills_the_command_and_its_children(
    deployed: DockerConnector, locations: list[ExecutionLocation]
) -> None:
    """On timeout the command and every child (even one in its own session) are killed."""
    loc = locations[1]
    script = "sleep 301 & setsid sleep 302 & sleep 303"
    with pytest.raises(CommandTimeoutError):
        await deployed.run(loc, ["sh", "-c", script], timeout=1.5)
    for _ in range(20):
        output, _code = await deployed.run(loc, ["ps", "-o", "stat,args"], capture_output=True)  # type: ignore[misc]
        live = [line for line in output.splitlines() if "sleep 30" in line and not line.startswith("Z")]
        if not live:
            break
        await asyncio.sleep(0.2)
    assert not live, output


# --- copies ---------------------------------------------------------------------------------------


def _tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "deep" / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    (root / "sub" / "deep" / "tool.sh").chmod(0o755)


async def test_copy_file_and_tree_both_ways(
    deployed: DockerConnector, locations: list[ExecutionLocation], tmp_path: Path
) -> None:
    """Files and trees go in and out with contents and exec bits; parents are created; dst replaced."""
    loc = locations[0]
    src = tmp_path / "src"
    _tree(src)
    await deployed.copy_local_to_remote(str(src / "a.txt"), "/tmp/c1/new/parent/b.txt", [loc])
    assert await deployed.run(loc, ["cat", "/tmp/c1/new/parent/b.txt"], capture_output=True) == ("alpha", 0)
    await deployed.copy_local_to_remote(str(src), "/tmp/c1/tree", [loc])
    await deployed.copy_local_to_remote(str(src), "/tmp/c1/tree", [loc])  # replaces, does not nest
    assert await deployed.run(loc, ["/tmp/c1/tree/sub/deep/tool.sh"], capture_output=True) == ("tool", 0)
    assert await deployed.run(loc, ["test", "-e", "/tmp/c1/tree/src"]) == 1
    listing, _ = await deployed.run(loc, ["ls", "-a", "/tmp/c1"], capture_output=True)  # type: ignore[misc]
    assert ".sf-transfer" not in listing

    out = tmp_path / "out"
    await deployed.copy_remote_to_local("/tmp/c1/tree", str(out / "x" / "tree"), loc)
    assert (out / "x" / "tree" / "a.txt").read_text() == "alpha\n"
    tool = out / "x" / "tree" / "sub" / "deep" / "tool.sh"
    assert tool.read_text() == "#!/bin/sh\necho tool\n" and tool.stat().st_mode & stat.S_IXUSR
    await deployed.copy_remote_to_local("/tmp/c1/new/parent/b.txt", str(out / "b.txt"), loc)
    assert (out / "b.txt").read_text() == "alpha\n"
    assert sorted(p.name for p in out.iterdir()) == ["b.txt", "x"]


async def test_copy_does_not_follow_a_symlink_at_the_destination(
    deployed: DockerConnector, locations: list[ExecutionLocation], tmp_path: Path
) -> None:
    """A link at dst is replaced, never written through (remote and local side)."""
    loc = locations[0]
    (tmp_path / "f").write_text("new\n")
    await deployed.run(
        loc, ["sh", "-c", "mkdir -p /tmp/l && echo keep > /tmp/l/target && ln -sf target /tmp/l/dst"]
    )
    await deployed.copy_local_to_remote(str(tmp_path / "f"), "/tmp/l/dst", [loc])
    assert await deployed.run(loc, ["cat", "/tmp/l/target"], capture_output=True) == ("keep", 0)
    assert await deployed.run(loc, ["cat", "/tmp/l/dst"], capture_output=True) == ("new", 0)
    (tmp_path / "keep").write_text("keep\n")
    (tmp_path / "link").symlink_to(tmp_path / "keep")
    await deployed.copy_remote_to_local("/tmp/l/dst", str(tmp_path / "link"), loc)
    assert (tmp_path / "keep").read_text() == "keep\n" and (tmp_path / "link").read_text() == "new\n"


async def test_copy_missing_source_is_a_transfer_error(
    deployed: DockerConnector, locations: list[ExecutionLocation], tmp_path: Path
) -> None:
    """Missing sources raise TransferError on both sides, and leave nothing behind."""
    with pytest.raises(TransferError):
        await deployed.copy_local_to_remote(str(tmp_path / "missing"), "/tmp/m/x", locations[:1])
    with pytest.raises(TransferError):
        await deployed.copy_remote_to_local("/no/such/file", str(tmp_path / "got"), locations[0])
    assert list(tmp_path.iterdir()) == []


async def test_copy_remote_to_remote(
    deployed: DockerConnector, locations: list[ExecutionLocation], tmp_path: Path
) -> None:
    """Container to container through the engine, and from another connector through this process."""
    first, second = locations
    src = tmp_path / "src"
    _tree(src)
    await deployed.copy_local_to_remote(str(src), "/tmp/rr/src", [first])
    await deployed.copy_remote_to_remote("/tmp/rr/src", "/tmp/rr/dst", [second], first, deployed)
    assert await deployed.run(second, ["/tmp/rr/dst/sub/deep/tool.sh"], capture_output=True) == ("tool", 0)
    local = LocalConnector("local", str(tmp_path))
    source = ExecutionLocation(LOCALHOST, "local", local=False)  # force the streamed path
    await deployed.copy_remote_to_remote(
        str(src / "a.txt"), "/tmp/rr/from-local.txt", [first, second], source, local
    )
    for loc in (first, second):
        assert await deployed.run(loc, ["cat", "/tmp/rr/from-local.txt"], capture_output=True) == ("alpha", 0)


# --- locations, lifecycle -------------------------------------------------------------------------


async def test_replicas_are_locations_with_hardware(deployed: DockerConnector) -> None:
    """`replicas: 2` gives two non-local locations named after the containers, with real hardware."""
    available = await deployed.get_available_locations()
    assert sorted(available) == sorted(deployed.container_names) and len(available) == 2
    for name, loc in available.items():
        assert loc.name == name and not loc.local and loc.deployment == "box"
        assert loc.hardware.cores >= 1 and loc.hardware.memory > 0 and loc.hardware.storage


class _Context:
    """The attributes of a StreamFlowContext the deployment manager uses."""

    def __init__(self, config_dir: str) -> None:
        self.config: dict[str, Any] = {"config_dir": config_dir}


_STREAMFLOW_YML = """\
version: v1.0
workflows:
  demo:
    type: cwl
    config: {{file: wf.cwl}}
    bindings:
      - step: /
        target: {{deployment: managed}}
deployments:
  managed:
    type: docker
    config:
      image: {image}
      dockerHost: {host}
      env: {{GREETING: hi}}
"""


def _streamflow_yml(tmp_path: Path, text: str) -> Path:
    (tmp_path / "wf.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\nsteps: []\n"
    )
    path = tmp_path / "streamflow.yml"
    path.write_text(text)
    return path


def test_streamflow_yml_errors_name_the_deployment_and_key(tmp_path: Path) -> None:
    """A docker deployment missing `image`, or with an unknown key, is a ConfigError naming it."""
    text = _STREAMFLOW_YML.format(image="img", host="unix:///x").replace("      image: img\n", "")
    with pytest.raises(ConfigError, match=r"deployments\.managed\.config.*image"):
        load_config(_streamflow_yml(tmp_path, text))
    text = _STREAMFLOW_YML.format(image="img", host="unix:///x") + "      replica: 2\n"
    with pytest.raises(ConfigError, match=r"deployments\.managed\.config.*replica"):
        load_config(_streamflow_yml(tmp_path, text))


@pytest.mark.slow
async def test_manager_deploys_and_undeploys(podman: PodmanInfo, tmp_path: Path) -> None:
    """streamflow.yml → DeploymentConfig → DefaultDeploymentManager; undeploy removes the container."""
    config = load_config(
        _streamflow_yml(tmp_path, _STREAMFLOW_YML.format(image=podman.image, host=podman.docker_host))
    )
    manager = DefaultDeploymentManager(_Context(str(tmp_path)), Registry.default())  # type: ignore[arg-type]
    await manager.deploy(config.deployments["managed"])
    try:
        connector = await manager.get_connector("managed")
        assert isinstance(connector, DockerConnector)
        [name] = connector.container_names
        loc = (await connector.get_available_locations())[name].location
        assert await connector.run(loc, ["sh", "-c", "echo $GREETING"], capture_output=True) == ("hi", 0)
        assert _exists(podman, name)
    finally:
        await manager.close()
    assert not _exists(podman, name)


async def test_failed_start_is_a_deployment_error_and_cleans_up(podman: PodmanInfo) -> None:
    """A container that exits at once fails the deploy, and is removed."""
    connector = DockerConnector(
        "bad", "/", image=podman.image, command=["false"], name="sf-bad-start", dockerHost=podman.docker_host
    )
    with pytest.raises(DeploymentError, match="sf-bad-start"):
        await connector.deploy(external=False)
    assert not _exists(podman, "sf-bad-start")


@pytest.mark.slow
async def test_external_container_is_used_and_left_alone(
    podman: PodmanInfo,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`external: true` finds a container started elsewhere (testcontainers) and never removes it."""
    from testcontainers.core.container import DockerContainer

    for key, value in podman.env.items():
        monkeypatch.setenv(key, value)
    with DockerContainer(podman.image).with_name("sf-external").with_command("sleep infinity") as container:
        for engine in [e for e in ("docker", "podman") if shutil.which(e)]:
            connector = DockerConnector("ext", "/", image=podman.image, name="sf-external", engine=engine)
            await connector.deploy(external=True)
            loc = (await connector.get_available_locations())["sf-external"].location
            assert await connector.run(loc, ["hostname"], capture_output=True) == (
                container.get_wrapped_container().id[:12],
                0,
            )
            await connector.undeploy(external=True)
            assert _exists(podman, "sf-external")
        missing = DockerConnector("ext", "/", image=podman.image, name="sf-not-there")
        with pytest.raises(DeploymentError, match="sf-not-there"):
            await missing.deploy(external=True)


# --- docker-compose ------------------------------------------------------------------------------


def test_compose_schema_and_argv(tmp_path: Path) -> None:
    """The compose connector validates its config and builds `<client> -f ... -p ... up -d`."""
    schema = DockerComposeConnector.get_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"files": ["compose.yml"], "projectName": "p"})
    assert not validator.is_valid({"projectName": "p"})
    connector = DockerComposeConnector(
        "c", str(tmp_path), files=["compose.yml"], projectName="p", client=["docker-compose"]
    )
    assert connector.compose_argv("up", "-d") == [
        "docker-compose",
        "-f",
        str(tmp_path / "compose.yml"),
        "-p",
        "p",
        "up",
        "-d",
    ]


@pytest.mark.slow
async def test_compose_services_are_locations(
    podman: PodmanInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each running container of each compose service is a location of that service."""
    for key, value in podman.env.items():
        monkeypatch.setenv(key, value)
    client = compose_client()
    if client is None:
        pytest.skip("no compose client here (docker compose, docker-compose or podman-compose)")
    (tmp_path / "compose.yml").write_text(
        f"services:\n  web:\n    image: {podman.image}\n    command: [sleep, infinity]\n"
        f"  worker:\n    image: {podman.image}\n    command: [sleep, infinity]\n"
    )
    connector = DockerComposeConnector("comp", str(tmp_path), files=["compose.yml"], projectName="sfcompose")
    await connector.deploy(external=False)
    try:
        web = await connector.get_available_locations("web")
        assert len(web) == 1
        loc = next(iter(web.values())).location
        assert loc.service == "web"
        assert await connector.run(loc, ["echo", "ok"], capture_output=True) == ("ok", 0)
        assert len(await connector.get_available_locations()) == 2
    finally:
        await connector.undeploy(external=False)
    assert not await connector.locations()


# --- singularity / apptainer ----------------------------------------------------------------------


def test_singularity_schema_and_argv(tmp_path: Path) -> None:
    """The schema validates; instance start and exec get binds, env, workdir (paths from config_dir)."""
    schema = SingularityConnector.get_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"image": "x.sif", "instanceName": "i", "bind": ["/a:/b"]})
    assert not validator.is_valid({"instanceName": "i"})
    assert Registry.default().get("connector", "apptainer") is SingularityConnector
    connector = SingularityConnector(
        "s", str(tmp_path), image="img.sif", instanceName="inst", bind=["data:/data", "/abs"], env={"A": 1},
        client="apptainer",
    )  # fmt: skip
    assert connector.start_argv() == [
        "apptainer", "instance", "start", "--bind", f"{tmp_path}/data:/data", "--bind", "/abs",
        "--env", "A=1", str(tmp_path / "img.sif"), "inst",
    ]  # fmt: skip
    loc = ExecutionLocation("inst", "s")
    assert connector.exec_argv(loc, ["true"], workdir="/w", environment={"K": "v"}) == [
        "apptainer", "exec", "--pwd", "/w", "--env", "K=v", "instance://inst", "true",
    ]  # fmt: skip
    assert SingularityConnector("s", "/", image="docker://busybox").image == "docker://busybox"


async def test_singularity_missing_client_is_a_deployment_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without apptainer or singularity on PATH, deploy says so."""
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DeploymentError, match="neither apptainer nor singularity is installed"):
        await SingularityConnector("s", str(tmp_path), image="x.sif").deploy(external=False)


@pytest.mark.skipif(
    singularity_client() is None, reason="neither apptainer nor singularity is installed (not packaged here)"
)
async def test_singularity_instance(tmp_path: Path) -> None:
    """A busybox sandbox as an instance: run, copies both ways, undeploy stops it."""
    root = tmp_path / "sandbox"
    for sub in ("bin", "tmp", "etc", "root"):
        (root / sub).mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    applets = subprocess.run(
        ["/bin/busybox", "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    connector = SingularityConnector("sing", str(tmp_path), image="sandbox", options=["--writable-tmpfs"])
    await connector.deploy(external=False)
    try:
        [loc] = [a.location for a in (await connector.get_available_locations()).values()]
        assert await connector.run(
            loc, ["sh", "-c", "echo $X; exit 2"], environment={"X": "y"}, capture_output=True
        ) == ("y", 2)
        (tmp_path / "f.txt").write_text("data\n")
        await connector.copy_local_to_remote(str(tmp_path / "f.txt"), "/tmp/sf/f.txt", [loc])
        await connector.copy_remote_to_local("/tmp/sf/f.txt", str(tmp_path / "back.txt"), loc)
        assert (tmp_path / "back.txt").read_text() == "data\n"
    finally:
        await connector.undeploy(external=False)
    assert not await connector.locations()
