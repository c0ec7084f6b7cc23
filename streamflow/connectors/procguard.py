"""Jobs that die with their engine, and leave nothing behind when they end.

A job's command runs as ``python -I -S procguard.py <engine pid> COMMAND...``: this small
guard leads the job's session (``start_new_session=True``), asks the kernel for a
parent-death signal (``prctl(PR_SET_PDEATHSIG, SIGTERM)``), starts the command in the same
process group and waits for it. When the engine dies (even by SIGKILL) the guard receives
SIGTERM and kills the whole process group with SIGKILL, so an orphaned tool does not go on
writing. Otherwise it exits with the command's status (a command killed by signal N makes
the guard die of signal N too), and the engine then kills what is left of the group
(:func:`kill_leftovers`): background processes the command forked do not outlive the job.

This file is run by path and imports nothing from StreamFlow: the guard starts in ~20 ms.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Any

__all__ = ["GUARD", "guarded", "kill_leftovers", "precheck", "wait_exit"]

GUARD = os.path.abspath(__file__)
"""The path of this script."""

_PR_SET_PDEATHSIG = 1


def guarded(command: list[str]) -> list[str]:
    """The argument list that runs ``command`` under the guard, for this process as engine."""
    return [sys.executable, "-I", "-S", GUARD, str(os.getpid()), *command]


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
        delay = min(delay * 2, 0.05)
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


def _kill_group(*_: object) -> None:
    os.killpg(0, signal.SIGKILL)  # the guard included


def _main(argv: list[str]) -> int:
    engine, command = int(argv[1]), argv[2:]
    signal.signal(signal.SIGTERM, _kill_group)
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0 or os.getppid() != engine:
        _kill_group()  # no way to learn of the engine's death, or it died already
    try:
        pid = os.posix_spawnp(command[0], command, os.environ)
    except FileNotFoundError:
        print(f"command not found: {command[0]}", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"cannot run {command[0]}: {exc.strerror}", file=sys.stderr)
        return 126
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        with contextlib.suppress(OSError, ValueError):  # SIGKILL and SIGSTOP keep their default
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
