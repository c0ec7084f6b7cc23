"""Tests of the local connector with real subprocesses and real files."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamflow.connectors.local import LOCALHOST, LocalConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.errors import RemoteCommandError, TransferError

LOCATION = ExecutionLocation(LOCALHOST, "local", hostname="localhost", local=True)


@pytest.fixture
async def connector(tmp_path: Path) -> LocalConnector:
    """A deployed local connector."""
    connector = LocalConnector("local", str(tmp_path))
    await connector.deploy(external=False)
    return connector


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers to kill(0): check its state where /proc exists.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


async def _eventually_dead(pid: int, deadline: float = 5.0) -> bool:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if not _pid_alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_run_captures_output_and_exit_code(connector: LocalConnector) -> None:
    """capture_output returns (stdout+stderr, exit code); a failure code is a result."""
    result = await connector.run(
        LOCATION, ["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True
    )
    assert result == ("out\nerr", 3)


async def test_run_without_capture_returns_exit_code(connector: LocalConnector) -> None:
    """Without capture_output, run returns the exit code only."""
    assert await connector.run(LOCATION, ["true"]) == 0
    assert await connector.run(LOCATION, ["false"]) == 1


async def test_run_uses_arguments_verbatim_not_a_shell(connector: LocalConnector) -> None:
    """Arguments are passed as a list; shell metacharacters are not interpreted."""
    assert await connector.run(LOCATION, ["echo", "$HOME; ls"], capture_output=True) == ("$HOME; ls", 0)


async def test_run_environment_and_workdir(connector: LocalConnector, tmp_path: Path) -> None:
    """environment extends the process environment; workdir sets the working directory."""
    output, code = await connector.run(  # type: ignore[misc]
        LOCATION,
        [sys.executable, "-c", "import os; print(os.getcwd(), os.environ['SF_X'], 'PATH' in os.environ)"],
        environment={"SF_X": "42"},
        workdir=str(tmp_path),
        capture_output=True,
    )
    assert code == 0 and output == f"{os.path.realpath(tmp_path)} 42 True"


async def test_run_redirects_stdin_stdout_stderr_files(connector: LocalConnector, tmp_path: Path) -> None:
    """stdin/stdout/stderr paths (relative to workdir) are read from and written to."""
    (tmp_path / "in.txt").write_text("hello\n")
    code = await connector.run(
        LOCATION,
        ["sh", "-c", "tr a-z A-Z; echo oops >&2"],
        workdir=str(tmp_path),
        stdin="in.txt",
        stdout="out/stdout.txt",
        stderr=str(tmp_path / "err" / "stderr.txt"),
    )
    assert code == 0
    assert (tmp_path / "out" / "stdout.txt").read_text() == "HELLO\n"
    assert (tmp_path / "err" / "stderr.txt").read_text() == "oops\n"


async def test_run_stdout_file_with_capture_returns_empty_output(
    connector: LocalConnector, tmp_path: Path
) -> None:
    """With stdout redirected to a file, captured output is empty and stderr can be discarded."""
    result = await connector.run(
        LOCATION,
        ["sh", "-c", "echo data; echo noise >&2"],
        stdout=str(tmp_path / "o.txt"),
        stderr=subprocess.DEVNULL,
        capture_output=True,
    )
    assert result == ("", 0) and (tmp_path / "o.txt").read_text() == "data\n"


async def test_run_timeout_kills_the_process_group(connector: LocalConnector, tmp_path: Path) -> None:
    """On timeout the command and its children are killed and CommandTimeoutError is raised."""
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    with pytest.raises(CommandTimeoutError) as info:
        await connector.run(LOCATION, ["sh", "-c", script], timeout=0.5)
    assert isinstance(info.value, TimeoutError) and info.value.retryable is False
    assert await _eventually_dead(int(pidfile.read_text()))


async def test_run_cancellation_kills_the_process_and_propagates(
    connector: LocalConnector, tmp_path: Path
) -> None:
    """Cancelling run() kills the subprocess group and re-raises CancelledError."""
    pidfile = tmp_path / "child.pid"
    task = asyncio.ensure_future(
        connector.run(LOCATION, ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"])
    )
    end = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < end
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _eventually_dead(int(pidfile.read_text()))


async def test_undeploy_kills_running_commands(connector: LocalConnector, tmp_path: Path) -> None:
    """undeploy() kills commands still running through the connector."""
    task = asyncio.ensure_future(connector.run(LOCATION, ["sleep", "30"]))
    end = time.monotonic() + 5
    while not connector._processes:
        assert time.monotonic() < end
        await asyncio.sleep(0.01)
    await connector.undeploy(external=False)
    assert await asyncio.wait_for(task, 5) == -9


async def test_run_missing_program_is_not_retryable(connector: LocalConnector) -> None:
    """A program that does not exist raises a non-retryable RemoteCommandError chained to the OSError."""
    with pytest.raises(RemoteCommandError) as info:
        await connector.run(LOCATION, ["/nonexistent/program"])
    assert info.value.retryable is False and isinstance(info.value.__cause__, FileNotFoundError)
    assert info.value.location == "local/localhost"


async def test_run_rejects_empty_command_and_missing_stdin(connector: LocalConnector, tmp_path: Path) -> None:
    """An empty command or an unreadable stdin file is a RemoteCommandError."""
    with pytest.raises(RemoteCommandError, match="empty"):
        await connector.run(LOCATION, [])
    with pytest.raises(RemoteCommandError):
        await connector.run(LOCATION, ["cat"], stdin=str(tmp_path / "missing"))


async def test_available_locations_describe_this_machine(connector: LocalConnector) -> None:
    """get_available_locations returns localhost with one slot per CPU and the machine's memory."""
    locations = await connector.get_available_locations()
    assert list(locations) == [LOCALHOST]
    location = locations[LOCALHOST]
    assert location.local and location.deployment == "local" and location.slots == os.cpu_count()
    assert location.hardware is not None and location.hardware.cores == os.cpu_count()
    assert location.hardware.memory > 0 and location.hardware.storage


async def test_copy_file_and_directory_writable(connector: LocalConnector, tmp_path: Path) -> None:
    """Writable copies of files and directories are real, independent copies."""
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("a")
    (tmp_path / "src" / "sub" / "b.txt").write_text("b")
    await connector.copy_local_to_remote(str(tmp_path / "src"), str(tmp_path / "dst" / "copy"), [LOCATION])
    copy = tmp_path / "dst" / "copy"
    assert not copy.is_symlink() and (copy / "sub" / "b.txt").read_text() == "b"
    await connector.copy_remote_to_local(str(tmp_path / "src" / "a.txt"), str(tmp_path / "a2.txt"), LOCATION)
    (tmp_path / "a2.txt").write_text("changed")
    assert (tmp_path / "src" / "a.txt").read_text() == "a"


async def test_copy_read_only_makes_a_symlink(connector: LocalConnector, tmp_path: Path) -> None:
    """A read-only copy is a symbolic link to the source's real path."""
    (tmp_path / "a.txt").write_text("a")
    await connector.copy_local_to_remote(
        str(tmp_path / "a.txt"), str(tmp_path / "in" / "a.txt"), [LOCATION], read_only=True
    )
    link = tmp_path / "in" / "a.txt"
    assert link.is_symlink() and os.readlink(link) == os.path.realpath(tmp_path / "a.txt")


async def test_writable_copy_replaces_a_link_without_touching_the_source(
    connector: LocalConnector, tmp_path: Path
) -> None:
    """Making a writable copy where a read-only link exists replaces the link, never writing through it."""
    (tmp_path / "a.txt").write_text("a")
    dst = tmp_path / "work" / "a.txt"
    await connector.copy_remote_to_local(str(tmp_path / "a.txt"), str(dst), LOCATION, read_only=True)
    await connector.copy_remote_to_local(str(tmp_path / "a.txt"), str(dst), LOCATION, read_only=False)
    assert not dst.is_symlink()
    dst.write_text("mine")
    assert (tmp_path / "a.txt").read_text() == "a"


async def test_copy_missing_source_is_transfer_error(connector: LocalConnector, tmp_path: Path) -> None:
    """Copying a path that does not exist raises a non-retryable TransferError."""
    with pytest.raises(TransferError) as info:
        await connector.copy_local_to_remote(str(tmp_path / "nope"), str(tmp_path / "x"), [LOCATION])
    assert info.value.retryable is False and isinstance(info.value.__cause__, FileNotFoundError)


async def test_copy_remote_to_remote_streams_from_another_connector(
    connector: LocalConnector, tmp_path: Path
) -> None:
    """A source on another connector (not local) is streamed as tar and lands at the destination name."""
    source = LocalConnector("other", str(tmp_path))
    (tmp_path / "data" / "d").mkdir(parents=True)
    (tmp_path / "data" / "d" / "f.txt").write_text("payload")
    remote = ExecutionLocation(LOCALHOST, "other", local=False)
    await connector.copy_remote_to_remote(
        str(tmp_path / "data" / "d"),
        str(tmp_path / "out" / "renamed"),
        [LOCATION],
        remote,
        source_connector=source,
    )
    assert (tmp_path / "out" / "renamed" / "f.txt").read_text() == "payload"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["renamed"]  # staging directory removed


async def test_stream_reader_and_writer(connector: LocalConnector, tmp_path: Path) -> None:
    """Stream readers yield a command's stdout; writers feed a command's stdin."""
    async with connector.get_stream_reader(["printf", "abc"], LOCATION) as reader:
        assert await reader.read() == b"abc"
        assert await reader.read(10) == b""
    target = tmp_path / "written.txt"
    async with connector.get_stream_writer(["sh", "-c", f"cat > {target}"], LOCATION) as writer:
        await writer.write(b"line1\n")
        await writer.write(b"line2\n")
    assert target.read_text() == "line1\nline2\n"


async def test_stream_failures_raise_transfer_error(connector: LocalConnector) -> None:
    """A stream command that exits with failure raises TransferError with its stderr."""
    with pytest.raises(TransferError, match="boom"):
        async with connector.get_stream_reader(["sh", "-c", "echo boom >&2; exit 2"], LOCATION) as reader:
            await reader.read()
    with pytest.raises(TransferError, match="exited with 1"):
        async with connector.get_stream_writer(["sh", "-c", "cat >/dev/null; exit 1"], LOCATION) as writer:
            await writer.write(b"x")


async def test_stream_reader_stopped_early_kills_the_command(connector: LocalConnector) -> None:
    """Leaving a reader before the end kills the producer instead of blocking."""
    async with connector.get_stream_reader(["yes"], LOCATION) as reader:
        assert (await reader.read(4)).startswith(b"y")


def test_schema_describes_transfer_buffer_size() -> None:
    """The local connector's config schema accepts transferBufferSize only."""
    schema = LocalConnector.get_schema()
    assert set(schema["properties"]) == {"transferBufferSize"} and schema["additionalProperties"] is False
