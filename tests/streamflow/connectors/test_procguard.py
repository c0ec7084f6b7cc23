"""The job guard (issue 14, points 2 and 5): jobs leave nothing behind and die with their engine.

Real processes: ``LocalConnector.run`` and ``local_run`` with commands that fork into the
background, and an engine process that is SIGKILLed while its command runs.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from streamflow.connectors.local import LOCALHOST, LocalConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.cwl.tool import local_run

LOCATION = ExecutionLocation(LOCALHOST, "local", hostname="localhost", local=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_file = Path(f"/proc/{pid}/stat")
    return not (stat_file.exists() and stat_file.read_text().split(")")[-1].split()[0] == "Z")


def _wait_dead(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return not _alive(pid)


async def test_connector_run_kills_background_children_and_does_not_wait_for_them(tmp_path: Path) -> None:
    """A command that leaves a child holding its output pipe returns at once; the child is killed."""
    connector = LocalConnector("local", str(tmp_path))
    begin = time.monotonic()
    result = await connector.run(LOCATION, ["sh", "-c", "sleep 30 & echo $!"], capture_output=True)
    assert isinstance(result, tuple)
    output, code = result
    assert code == 0 and time.monotonic() - begin < 5
    assert _wait_dead(int(output.split()[-1])), "the background child outlived the command"


async def test_local_run_kills_a_straggler_before_it_writes(tmp_path: Path) -> None:
    """``local_run``: a writer forked into the background is killed when the command ends."""
    script = "(sleep 1; echo late >> out.txt) </dev/null >/dev/null 2>&1 & echo early > out.txt"
    code = await local_run(["sh", "-c", script], environment=dict(os.environ), workdir=str(tmp_path))
    assert code == 0
    time.sleep(1.5)
    assert (tmp_path / "out.txt").read_text() == "early\n"


async def test_commands_run_with_umask_077_and_keep_their_exit_status(tmp_path: Path) -> None:
    """Files a command creates are private; exit codes and deaths by signal come through the guard."""
    connector = LocalConnector("local", str(tmp_path))
    assert await connector.run(LOCATION, ["sh", "-c", "echo x > made; exit 3"], workdir=str(tmp_path)) == 3
    assert stat.S_IMODE((tmp_path / "made").stat().st_mode) == 0o600
    assert await connector.run(LOCATION, ["sh", "-c", "kill -TERM $$"]) == -signal.SIGTERM
    assert await local_run(["sh", "-c", "kill -KILL $$"], environment=dict(os.environ),
                           workdir=str(tmp_path)) == -signal.SIGKILL


def test_command_and_its_children_die_with_the_engine(tmp_path: Path) -> None:
    """SIGKILL the process running a command: the command and its background child die too.

    The engine is killed while the command runs, once it has registered the command with its
    reaper: a job is registered right after its ``fork``, and a SIGKILL in the ~1 ms between
    the two (the job already running, not yet registered) is a window this guard does not
    close (the reaper kills only the process groups it was told are ours)."""
    pids = tmp_path / "pids"
    engine = textwrap.dedent(f"""
        import asyncio, os
        from streamflow.cwl.tool import local_run
        asyncio.run(local_run(["sh", "-c", "sleep 60 & echo $$ $! > {pids}; wait"],
                              environment=dict(os.environ), workdir={str(tmp_path)!r}))
    """)
    proc = subprocess.Popen([sys.executable, "-c", engine])
    try:
        deadline = time.monotonic() + 20
        while not (pids.exists() and len(pids.read_text().split()) == 2) and time.monotonic() < deadline:
            time.sleep(0.02)
        shell, child = (int(p) for p in pids.read_text().split())
        time.sleep(0.5)  # the command runs for 60 s: the engine has registered it by now
    finally:
        proc.kill()
        proc.wait()
    assert _wait_dead(shell) and _wait_dead(child), "the command outlived its engine"
