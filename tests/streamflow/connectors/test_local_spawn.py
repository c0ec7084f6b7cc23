"""The local connector's cheaper job spawn: executables remembered per PATH, the exit awaited
without polling, the reaper replaced when it died (issue 13, worker)."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from streamflow.connectors import procguard
from streamflow.connectors.local import LOCALHOST, LocalConnector
from streamflow.connectors.procguard import locate, reaper
from streamflow.core.deployment import ExecutionLocation
from streamflow.errors import RemoteCommandError

LOCATION = ExecutionLocation(LOCALHOST, "local", hostname="localhost", local=True)


def _program(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho {text}\n")
    path.chmod(0o755)
    return path


def test_locate_remembers_a_program_per_path(tmp_path: Path) -> None:
    first = _program(tmp_path / "a", "sf-tool", "a")
    env = {"PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}"}
    assert locate(["sf-tool"], env, None) == (str(first), 0)
    _program(tmp_path / "b", "sf-tool", "b")
    first.unlink()
    # Remembered: no search (the caller drops it once the spawn fails).
    assert locate(["sf-tool"], env, None) == (str(first), 0)
    assert procguard.forget_executable(["sf-tool"], env)
    assert locate(["sf-tool"], env, None) == (str(tmp_path / "b" / "sf-tool"), 0)
    assert locate(["sf-no-such-tool"], env, None) == (None, 127)
    (tmp_path / "a" / "sf-plain").write_text("not executable")
    assert locate(["sf-plain"], env, None) == (None, 126)
    # A relative entry depends on the working directory: searched by exec, never remembered.
    relative = {"PATH": f"a:{tmp_path / 'b'}"}
    assert locate(["sf-tool"], relative, str(tmp_path)) == (None, 0)
    assert ("sf-tool", relative["PATH"]) not in procguard._located


async def test_a_remembered_program_that_moved_is_found_again(tmp_path: Path) -> None:
    connector = LocalConnector("local", str(tmp_path))
    first = _program(tmp_path / "a", "sf-moving", "first")
    env = {"PATH": f"{tmp_path / 'a'}:{tmp_path / 'b'}:/usr/bin:/bin"}
    assert await connector.run(LOCATION, ["sf-moving"], environment=env, capture_output=True,
                               inherit_environment=False) == ("first", 0)
    first.unlink()
    _program(tmp_path / "b", "sf-moving", "second")
    assert await connector.run(LOCATION, ["sf-moving"], environment=env, capture_output=True,
                               inherit_environment=False) == ("second", 0)
    (tmp_path / "b" / "sf-moving").unlink()
    with pytest.raises(RemoteCommandError, match="not found") as info:
        await connector.run(LOCATION, ["sf-moving"], environment=env, inherit_environment=False)
    assert not info.value.retryable


async def test_argv0_stays_the_name_the_tool_gave(tmp_path: Path) -> None:
    connector = LocalConnector("local", str(tmp_path))
    out, code = await connector.run(LOCATION, ["sh", "-c", 'echo "$0"'], capture_output=True)
    assert (out, code) == ("sh", 0)


async def test_exit_is_seen_while_a_background_child_holds_the_output(tmp_path: Path) -> None:
    connector = LocalConnector("local", str(tmp_path))
    began = time.monotonic()
    code = await connector.run(LOCATION, ["sh", "-c", "sleep 30 & exit 3"], stdout=str(tmp_path / "o" / "out.txt"),
                               stderr=str(tmp_path / "err.txt"))
    assert code == 3 and time.monotonic() - began < 10
    assert (tmp_path / "o" / "out.txt").exists()  # its missing parent was created


async def test_a_dead_reaper_is_replaced_at_the_next_job(tmp_path: Path) -> None:
    connector = LocalConnector("local", str(tmp_path))
    assert await connector.run(LOCATION, ["true"]) == 0
    old = reaper()._process
    assert old is not None
    os.kill(old.pid, signal.SIGKILL)
    old.wait()
    marker = tmp_path / "child.pid"
    task = asyncio.ensure_future(connector.run(LOCATION, ["sh", "-c", f"sleep 60 & echo $! > {marker}; wait"]))
    for _ in range(500):
        if marker.exists() and marker.read_text().strip():
            break
        await asyncio.sleep(0.01)
    new = reaper()._process
    assert new is not None and new.pid != old.pid and new.poll() is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shutil.which("true")
