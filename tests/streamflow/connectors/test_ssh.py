"""Tests of the ssh connector against a real OpenSSH sshd started by the fixture."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from streamflow.connectors.local import LOCALHOST, LocalConnector
from streamflow.connectors.ssh import SSHConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.errors import RemoteCommandError, TransferError
from tests.backends.sshd import SshdInfo, sshd

__all__ = ["sshd"]  # the session fixture, imported so that pytest finds it

NODE = ExecutionLocation("127.0.0.1", "ssh", hostname="127.0.0.1")
OTHER_NODE = ExecutionLocation("localhost", "ssh", hostname="localhost")


def _connector(info: SshdInfo, config_dir: Path | str, **extra: Any) -> SSHConnector:
    config = info.connector_config(**{"retries": 0, "retryDelay": 0.1, **extra})
    jsonschema.validate(config, SSHConnector.get_schema())
    return SSHConnector("ssh", str(config_dir), **config)


@pytest.fixture
async def connector(sshd: SshdInfo, tmp_path: Path) -> AsyncIterator[SSHConnector]:
    """A deployed ssh connector on the session's sshd (one node, 127.0.0.1)."""
    connector = _connector(sshd, tmp_path)
    await connector.deploy(external=False)
    try:
        yield connector
    finally:
        await connector.undeploy(external=False)


@pytest.fixture
async def two_nodes(sshd: SshdInfo, tmp_path: Path) -> AsyncIterator[SSHConnector]:
    """A deployed ssh connector with two nodes (127.0.0.1 and localhost, the same sshd)."""
    connector = _connector(sshd, tmp_path, nodes=["127.0.0.1", {"hostname": "localhost"}])
    await connector.deploy(external=False)
    try:
        yield connector
    finally:
        await connector.undeploy(external=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_file = Path(f"/proc/{pid}/stat")
    return not (stat_file.exists() and stat_file.read_text().rsplit(")", 1)[-1].split()[0] == "Z")


async def _eventually_dead(pid: int, deadline: float = 5.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not _pid_alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def _wait_for(path: Path, deadline: float = 10.0) -> str:
    end = time.monotonic() + deadline
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < end, f"{path} never appeared"
        await asyncio.sleep(0.02)
    return path.read_text().strip()


def _leftovers(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.startswith(".sf-")]


# --- run ------------------------------------------------------------------------------------------


async def test_run_captures_output_and_exit_code(connector: SSHConnector) -> None:
    """capture_output returns (stdout+stderr, exit code); a failure code is a result."""
    result = await connector.run(NODE, ["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
    assert result == ("out\nerr", 3)
    assert await connector.run(NODE, ["true"]) == 0
    assert await connector.run(NODE, ["sh", "-c", "exit 42"]) == 42


async def test_run_quotes_every_word(connector: SSHConnector) -> None:
    """Arguments reach the program verbatim: no remote shell interprets them."""
    words = ["$HOME; ls", "a'b\"c", "*", "`id`", ""]
    output, code = await connector.run(  # type: ignore[misc]
        NODE, ["printf", "[%s]", *words], capture_output=True
    )
    assert code == 0 and output == "".join(f"[{word}]" for word in words)


async def test_run_environment_and_workdir(connector: SSHConnector, tmp_path: Path) -> None:
    """environment is added with env K=V; workdir is the working directory."""
    output, code = await connector.run(  # type: ignore[misc]
        NODE,
        ["sh", "-c", 'echo "$(pwd)|$SF_X|$SF_Y"'],
        environment={"SF_X": "a b'c", "SF_Y": "$HOME"},
        workdir=str(tmp_path),
        capture_output=True,
    )
    assert code == 0 and output == f"{tmp_path}|a b'c|$HOME"


async def test_run_redirects_stdin_stdout_stderr_files(connector: SSHConnector, tmp_path: Path) -> None:
    """stdin/stdout/stderr paths (relative to workdir) are used; parents of outputs are created."""
    (tmp_path / "in.txt").write_text("hello\n")
    code = await connector.run(
        NODE,
        ["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 5"],
        workdir=str(tmp_path),
        stdin="in.txt",
        stdout="out/stdout.txt",
        stderr=str(tmp_path / "err" / "stderr.txt"),
    )
    assert code == 5
    assert (tmp_path / "out" / "stdout.txt").read_text() == "HELLO\n"
    assert (tmp_path / "err" / "stderr.txt").read_text() == "oops\n"


async def test_run_merges_or_discards_stderr(connector: SSHConnector, tmp_path: Path) -> None:
    """stderr None follows stdout (to a file or captured); DEVNULL discards it."""
    code = await connector.run(NODE, ["sh", "-c", "echo a; echo b >&2"], stdout=str(tmp_path / "both"))
    assert code == 0 and (tmp_path / "both").read_text() == "a\nb\n"
    result = await connector.run(
        NODE, ["sh", "-c", "echo a; echo b >&2"], stderr=subprocess.DEVNULL, capture_output=True
    )
    assert result == ("a", 0)
    result = await connector.run(
        NODE, ["sh", "-c", "echo data"], stdout=str(tmp_path / "o"), capture_output=True
    )
    assert result == ("", 0) and (tmp_path / "o").read_text() == "data\n"


async def test_run_empty_stdin_by_default(connector: SSHConnector) -> None:
    """Without stdin the command reads end-of-file at once (it does not hang)."""
    assert await connector.run(NODE, ["cat"], capture_output=True, timeout=10) == ("", 0)


async def test_run_missing_workdir_is_a_failure_result(connector: SSHConnector, tmp_path: Path) -> None:
    """A missing workdir gives a non-zero code and the shell's message on the captured output."""
    output, code = await connector.run(  # type: ignore[misc]
        NODE, ["true"], workdir=str(tmp_path / "missing"), capture_output=True
    )
    assert code != 0 and "missing" in output


async def test_run_timeout_kills_the_remote_group(connector: SSHConnector, tmp_path: Path) -> None:
    """On timeout the remote command and its children are killed; CommandTimeoutError is raised."""
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(CommandTimeoutError) as info:
        await connector.run(NODE, ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"], timeout=1)
    assert time.monotonic() - start < 10
    assert isinstance(info.value, TimeoutError) and info.value.retryable is False
    assert await _eventually_dead(int(await _wait_for(pidfile)))
    assert await connector.run(NODE, ["true"]) == 0  # the connection is still usable


async def test_run_cancellation_kills_the_remote_group(connector: SSHConnector, tmp_path: Path) -> None:
    """Cancelling run() kills the remote group and re-raises CancelledError."""
    pidfile = tmp_path / "child.pid"
    task = asyncio.ensure_future(connector.run(NODE, ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]))
    pid = int(await _wait_for(pidfile))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _eventually_dead(pid)


async def test_undeploy_kills_running_commands(sshd: SshdInfo, tmp_path: Path) -> None:
    """undeploy() kills the commands still running and closes the connections."""
    connector = _connector(sshd, tmp_path)
    await connector.deploy(external=False)
    pidfile = tmp_path / "child.pid"
    task = asyncio.ensure_future(connector.run(NODE, ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]))
    pid = int(await _wait_for(pidfile))
    await connector.undeploy(external=False)
    assert await _eventually_dead(pid)
    assert await asyncio.wait_for(task, 10) == 128 + 9  # killed by SIGKILL, as a shell reports it
    # A later use reconnects.
    assert await connector.run(NODE, ["true"]) == 0
    await connector.undeploy(external=False)


async def test_sessions_are_multiplexed_on_one_connection(sshd: SshdInfo, tmp_path: Path) -> None:
    """Concurrent commands beyond maxConcurrentSessions wait for a slot, all on one connection."""
    connector = _connector(sshd, tmp_path, maxConcurrentSessions=3)
    try:
        start = time.monotonic()
        results = await asyncio.gather(
            *(
                connector.run(NODE, ["sh", "-c", f"sleep 0.5; echo {i}"], capture_output=True)
                for i in range(6)
            )
        )
        elapsed = time.monotonic() - start
        assert results == [(str(i), 0) for i in range(6)]
        assert 0.9 < elapsed < 10  # two waves of three
        pool = connector._pools["127.0.0.1"]
        assert len(pool._entries) == 1
    finally:
        await connector.undeploy(external=False)


async def test_timeout_kill_works_when_every_session_is_busy(sshd: SshdInfo, tmp_path: Path) -> None:
    """With all the server's sessions in use (MaxSessions 20), a timed-out command is still killed."""
    connector = _connector(sshd, tmp_path, maxConcurrentSessions=20)
    pidfiles = [tmp_path / f"child{i}.pid" for i in range(20)]
    try:
        long_runs = [
            asyncio.ensure_future(connector.run(NODE, ["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"]))
            for pidfile in pidfiles[:19]
        ]
        pids = [int(await _wait_for(pidfile)) for pidfile in pidfiles[:19]]
        start = time.monotonic()
        with pytest.raises(CommandTimeoutError):
            await connector.run(NODE, ["sh", "-c", f"sleep 300 & echo $! > {pidfiles[19]}; wait"], timeout=1)
        assert time.monotonic() - start < 15
        assert await _eventually_dead(int(await _wait_for(pidfiles[19])))
        for task in long_runs:
            task.cancel()
        await asyncio.gather(*long_runs, return_exceptions=True)
        for pid in pids:
            assert await _eventually_dead(pid)
    finally:
        await connector.undeploy(external=False)


async def test_unreachable_host_is_a_retryable_remote_command_error(tmp_path: Path) -> None:
    """A node nobody answers on gives a retryable RemoteCommandError from run()."""
    with socketless_port() as port:
        connector = SSHConnector(
            "ssh",
            str(tmp_path),
            nodes=["127.0.0.1"],
            port=port,
            retries=1,
            retryDelay=0.05,
            checkHostKey=False,
        )
        with pytest.raises(RemoteCommandError) as info:
            await connector.run(NODE, ["true"])
    assert info.value.retryable is True and "after 2 attempt(s)" in str(info.value)


class socketless_port:
    """A port number on 127.0.0.1 with no listener (bound but not listening while in use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return int(self._sock.getsockname()[1])

    def __exit__(self, *args: object) -> None:
        self._sock.close()


# --- copies ---------------------------------------------------------------------------------------


def _make_tree(root: Path) -> None:
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "a.txt").write_text("alpha\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    (root / "sub" / "deep" / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "sub" / "deep" / "run.sh").chmod(0o755)


def _assert_tree(root: Path) -> None:
    assert (root / "a.txt").read_text() == "alpha\n"
    assert (root / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    assert os.stat(root / "sub" / "deep" / "run.sh").st_mode & stat.S_IXUSR
    assert not os.stat(root / "a.txt").st_mode & stat.S_IXUSR


async def test_copy_file_both_ways_keeps_contents_and_exec_bit(
    connector: SSHConnector, tmp_path: Path
) -> None:
    """A file goes up and comes back with its contents and executable bit; parents are created."""
    src = tmp_path / "tool.sh"
    src.write_text("#!/bin/sh\necho tool\n")
    src.chmod(0o750)
    remote = tmp_path / "remote" / "x" / "tool.sh"
    await connector.copy_local_to_remote(str(src), str(remote), [NODE])
    assert await connector.run(NODE, [str(remote)], capture_output=True) == ("tool", 0)
    assert await connector.run(NODE, ["stat", "-c", "%a", str(remote)], capture_output=True) == ("750", 0)
    back = tmp_path / "back" / "y" / "tool.sh"
    await connector.copy_remote_to_local(str(remote), str(back), NODE)
    assert back.read_text() == src.read_text() and stat.S_IMODE(os.stat(back).st_mode) == 0o750
    assert _leftovers(remote.parent) == [] and _leftovers(back.parent) == []


async def test_copy_tree_both_ways(connector: SSHConnector, tmp_path: Path) -> None:
    """A directory tree is copied recursively both ways, exec bits included, without leftovers."""
    _make_tree(tmp_path / "src")
    remote = tmp_path / "remote" / "tree"
    await connector.copy_local_to_remote(str(tmp_path / "src"), str(remote), [NODE])
    _assert_tree(remote)
    assert await connector.run(NODE, [str(remote / "sub" / "deep" / "run.sh")], capture_output=True) == (
        "run",
        0,
    )
    back = tmp_path / "back" / "tree"
    await connector.copy_remote_to_local(str(remote), str(back), NODE)
    _assert_tree(back)
    assert _leftovers(remote.parent) == [] and _leftovers(back.parent) == []


async def test_copy_replaces_destination_without_following_links(
    connector: SSHConnector, tmp_path: Path
) -> None:
    """An existing dst (dir, file, or a symlink to elsewhere) is replaced, never written through."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    src = tmp_path / "new.txt"
    src.write_text("new\n")
    link = tmp_path / "up" / "dst.txt"
    link.parent.mkdir()
    link.symlink_to(victim)
    await connector.copy_local_to_remote(str(src), str(link), [NODE])
    assert not link.is_symlink() and link.read_text() == "new\n" and victim.read_text() == "keep me\n"
    # A directory replaced by a file, then a file by a directory.
    (tmp_path / "up" / "d" / "inner").mkdir(parents=True)
    await connector.copy_local_to_remote(str(src), str(tmp_path / "up" / "d"), [NODE])
    assert (tmp_path / "up" / "d").read_text() == "new\n"
    _make_tree(tmp_path / "tree")
    await connector.copy_local_to_remote(str(tmp_path / "tree"), str(tmp_path / "up" / "d"), [NODE])
    _assert_tree(tmp_path / "up" / "d")
    # Coming back, a local symlink at dst is replaced too.
    back = tmp_path / "back.txt"
    back.symlink_to(victim)
    await connector.copy_remote_to_local(str(link), str(back), NODE)
    assert not back.is_symlink() and back.read_text() == "new\n" and victim.read_text() == "keep me\n"
    assert _leftovers(tmp_path / "up") == [] and _leftovers(tmp_path) == []


async def test_copy_is_atomic_under_concurrent_readers(connector: SSHConnector, tmp_path: Path) -> None:
    """While a large file is uploaded over an old one, dst is always either complete version."""
    old, new = b"o" * 2_000_000, b"n" * 3_000_000
    dst = tmp_path / "dst.bin"
    dst.write_bytes(old)
    src = tmp_path / "src.bin"
    src.write_bytes(new)
    seen: set[int] = set()
    copy = asyncio.ensure_future(connector.copy_local_to_remote(str(src), str(dst), [NODE]))
    while not copy.done():
        seen.add(len(dst.read_bytes()))
        await asyncio.sleep(0)
    await copy
    assert seen <= {len(old), len(new)} and dst.read_bytes() == new
    assert _leftovers(tmp_path) == []


async def test_copy_missing_source_is_not_retryable(connector: SSHConnector, tmp_path: Path) -> None:
    """A missing source raises a non-retryable TransferError and leaves nothing behind."""
    with pytest.raises(TransferError) as info:
        await connector.copy_remote_to_local(str(tmp_path / "nope"), str(tmp_path / "out"), NODE)
    assert info.value.retryable is False
    with pytest.raises(TransferError):
        await connector.copy_local_to_remote(str(tmp_path / "nope"), str(tmp_path / "out"), [NODE])
    assert _leftovers(tmp_path) == [] and not (tmp_path / "out").exists()


async def test_copy_remote_to_remote_same_and_other_node(two_nodes: SSHConnector, tmp_path: Path) -> None:
    """Same node: cp there; other node of the connector: a tar stream through this process."""
    _make_tree(tmp_path / "src")
    await two_nodes.copy_remote_to_remote(
        str(tmp_path / "src"), str(tmp_path / "same" / "t"), [NODE], source_location=NODE
    )
    _assert_tree(tmp_path / "same" / "t")
    await two_nodes.copy_remote_to_remote(
        str(tmp_path / "src"), str(tmp_path / "other" / "t"), [OTHER_NODE], source_location=NODE
    )
    _assert_tree(tmp_path / "other" / "t")
    assert _leftovers(tmp_path / "same") == [] and _leftovers(tmp_path / "other") == []


async def test_copy_remote_to_remote_from_other_connectors(
    connector: SSHConnector, sshd: SshdInfo, tmp_path: Path
) -> None:
    """From the local connector (SFTP upload) and from another ssh deployment (tar stream)."""
    _make_tree(tmp_path / "src")
    local = LocalConnector("local", str(tmp_path))
    local_location = ExecutionLocation(LOCALHOST, "local", hostname="localhost", local=True)
    await connector.copy_remote_to_remote(
        str(tmp_path / "src"), str(tmp_path / "from-local"), [NODE], local_location, local
    )
    _assert_tree(tmp_path / "from-local")
    other = _connector(sshd, tmp_path, nodes=["localhost"])
    try:
        await connector.copy_remote_to_remote(
            str(tmp_path / "src"),
            str(tmp_path / "from-other"),
            [NODE],
            ExecutionLocation("localhost", "other", hostname="localhost"),
            other,
        )
    finally:
        await other.undeploy(external=False)
    _assert_tree(tmp_path / "from-other")


# --- streams --------------------------------------------------------------------------------------


async def test_stream_reader_and_writer(connector: SSHConnector, tmp_path: Path) -> None:
    """A reader streams a remote command's output; a writer feeds a remote command's input."""
    data = os.urandom(300_000)
    (tmp_path / "in.bin").write_bytes(data)
    chunks = []
    async with connector.get_stream_reader(["cat", str(tmp_path / "in.bin")], NODE) as reader:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    assert b"".join(chunks) == data
    async with connector.get_stream_writer(["sh", "-c", f"cat > {tmp_path / 'out.bin'}"], NODE) as writer:
        for i in range(0, len(data), 50_000):
            await writer.write(data[i : i + 50_000])
    assert (tmp_path / "out.bin").read_bytes() == data


async def test_stream_failures_raise_transfer_error(connector: SSHConnector, tmp_path: Path) -> None:
    """A failing stream command raises TransferError with its standard error."""
    with pytest.raises(TransferError, match="No such file"):
        async with connector.get_stream_reader(["cat", str(tmp_path / "missing")], NODE) as reader:
            await reader.read()
    with pytest.raises(TransferError, match="exited with 3"):
        async with connector.get_stream_writer(["sh", "-c", "cat >/dev/null; exit 3"], NODE) as writer:
            await writer.write(b"x")


# --- locations ------------------------------------------------------------------------------------


async def test_available_locations_report_real_hardware(two_nodes: SSHConnector) -> None:
    """One location per node, named by host name, with cores, memory and /tmp storage probed."""
    locations = await two_nodes.get_available_locations()
    assert set(locations) == {"127.0.0.1", "localhost"}
    location = locations["127.0.0.1"]
    assert location.hostname == "127.0.0.1" and location.local is False and location.deployment == "ssh"
    assert location.hardware is not None
    assert location.hardware.cores == len(os.sched_getaffinity(0))
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    assert location.hardware.memory == pytest.approx(int(meminfo["MemTotal"].split()[0]) / 1024)
    ((mount, free),) = location.hardware.storage.items()
    assert os.path.ismount(mount) and free == pytest.approx(shutil.disk_usage("/tmp").free / 2**20, rel=0.05)
    assert locations["localhost"].location == OTHER_NODE
