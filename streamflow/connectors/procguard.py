"""Jobs that die with their engine, and leave nothing behind when they end.

Every job command starts in a session (and process group) of its own. The engine
registers the group with its *reaper*: one small process per engine process (``python -I
-S procguard.py --reaper <engine pid>``, started on first use), which holds the read end of
a pipe whose write end only the engine has. When the engine dies, even by SIGKILL, the
kernel closes that pipe; the reaper reads end-of-file and kills every group still
registered with SIGKILL, so an orphaned tool does not go on writing. When a command ends,
the engine kills what is left of its group (:func:`kill_leftovers`: background processes it
forked do not outlive the job) and unregisters it.

One reaper per process, rather than a guard per job, keeps the cost of a job at a few
microseconds of pipe writes (a guard interpreter per job cost ~20 ms of CPU). This file
imports nothing from StreamFlow: the reaper starts in ~20 ms, once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from typing import IO, Any

__all__ = ["GUARD", "forget_executable", "kill_leftovers", "locate", "precheck", "reaper", "wait_exit"]

GUARD = os.path.abspath(__file__)
"""The path of this script."""

class Reaper:
    """The engine side of the reaper: registers and unregisters job process groups."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._owner = 0

    def _pipe(self) -> IO[bytes]:
        # A reaper that died is noticed when a write to it fails (EPIPE), not polled for
        # before every write: registering a job stays one pipe write.
        if self._process is None or self._owner != os.getpid():
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", GUARD, "--reaper", str(os.getpid())],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)  # not in our process group: it must outlive a Ctrl-C of it
            self._owner = os.getpid()
        assert self._process.stdin is not None
        return self._process.stdin

    def _send(self, line: str) -> None:
        with self._lock:
            for _ in range(2):  # a reaper that died is replaced once
                try:
                    pipe = self._pipe()
                    pipe.write(line.encode())
                    pipe.flush()
                    return
                except (BrokenPipeError, OSError):
                    self._process = None

    def start(self) -> None:
        """Start the reaper now (before a job is spawned: registering it is then a pipe write)."""
        with self._lock:
            self._pipe()

    def watch(self, pgid: int) -> None:
        """Kill process group ``pgid`` if this process dies before :meth:`forget`."""
        self._send(f"+{pgid}\n")

    def forget(self, pgid: int) -> None:
        """The job of group ``pgid`` ended (and its leftovers were killed)."""
        self._send(f"-{pgid}\n")


_reaper = Reaper()


def reaper() -> Reaper:
    """This process's reaper."""
    return _reaper


#: Where a program name was found on a ``PATH`` (an absolute one only): (name, PATH) -> file.
_located: dict[tuple[str, str], str] = {}


def locate(command: list[str], environment: dict[str, str] | None, workdir: str | None) -> tuple[str | None, int]:
    """The file to execute for ``command[0]``, and :func:`precheck`'s verdict on it.

    For a bare program name searched on a ``PATH`` whose entries are all absolute, the file
    found is remembered per name and ``PATH``: later jobs skip the search (a ``stat`` per
    directory), and the child ``exec``s that file at once instead of trying each directory
    in turn. A remembered file that is gone makes the spawn fail: the caller then drops it
    (:func:`forget_executable`) and tries again without it.

    Returns:
        ``(file, 0)`` with the file to pass as ``executable`` (None: let ``exec`` search),
        or ``(None, 127)``/``(None, 126)`` when the command cannot be run.
    """
    name = command[0]
    if "/" in name:
        return None, precheck(command, environment, workdir)
    env = environment if environment is not None else os.environ
    search = env.get("PATH", os.defpath)
    key = (name, search)
    found = _located.get(key)
    if found is not None:
        return found, 0
    if not all(os.path.isabs(folder) for folder in search.split(os.pathsep)):
        return None, precheck(command, environment, workdir)  # depends on the working directory
    import shutil

    found = shutil.which(name, path=search)
    if found is None:
        return None, precheck(command, environment, workdir)
    _located[key] = found
    return found, 0


def forget_executable(command: list[str], environment: dict[str, str] | None) -> bool:
    """Drop what :func:`locate` remembered for ``command[0]``; whether there was anything."""
    env = environment if environment is not None else os.environ
    return _located.pop((command[0], env.get("PATH", os.defpath)), None) is not None


def precheck(command: list[str], environment: dict[str, str] | None, workdir: str | None) -> int:
    """Whether ``command[0]`` can be executed: 0, 127 (not found) or 126 (not executable).

    The guard starts the command itself, so the engine checks first what it would otherwise
    have learnt from ``exec``; the search follows ``PATH`` of ``environment``.
    """
    import shutil

    name = command[0]
    if "/" in name:
        path = name if os.path.isabs(name) else os.path.join(workdir or os.getcwd(), name)
        if not os.path.exists(path):
            return 127
        return 0 if os.path.isfile(path) and os.access(path, os.X_OK) else 126
    env = environment if environment is not None else os.environ
    search = env.get("PATH", os.defpath)
    if shutil.which(name, path=search) is not None:
        return 0
    for folder in search.split(os.pathsep):
        if os.path.exists(os.path.join(folder or ".", name)):
            return 126
    return 127


async def wait_exit(process: Any) -> int:
    """Wait until ``process`` (an ``asyncio.subprocess.Process``) has exited.

    Unlike ``Process.wait()`` on Python 3.11, this does not also wait for its pipes to
    close, which a background child holding them would delay for ever.
    """
    import asyncio

    delay = 0.001
    while process.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.01)
    code: int = process.returncode
    return code


def kill_leftovers(pgid: int) -> None:
    """SIGKILL the process group ``pgid`` of a job whose leader has just ended.

    The group id cannot belong to anybody else while one of its members lives; once it is
    empty the call finds nothing (reusing the id in between would need the pid space to
    wrap around within microseconds).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap(engine: int) -> int:
    """The reaper's loop: track the registered groups until the engine's pipe closes, then kill them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the engine's terminal
    groups: set[int] = set()
    stdin = sys.stdin.buffer
    try:
        for raw in stdin:
            line = raw.strip()
            if line[:1] == b"+":
                groups.add(int(line[1:]))
            elif line[:1] == b"-":
                groups.discard(int(line[1:]))
    finally:
        # End of file: the engine (pid ``engine``) is gone, or closed us on purpose.
        for pgid in groups:
            kill_leftovers(pgid)
    return 0


def _main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[1] == "--reaper":
        return _reap(int(argv[2]))
    print("usage: procguard.py --reaper ENGINE_PID", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
