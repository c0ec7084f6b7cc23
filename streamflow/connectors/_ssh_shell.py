"""Remote command lines of the ``ssh`` connector, and a :class:`StreamWrapper` over a channel."""

from __future__ import annotations

import contextlib
import posixpath
import re
import shlex
import signal
import subprocess
from collections.abc import Mapping

import asyncssh

from streamflow.core.data import StreamWrapper
from streamflow.errors import RemoteCommandError, TransferError

__all__ = ["SSHStream", "exit_code", "job_command_line", "kill_group_command_line"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _redirect(value: int | str | None, what: str, default: str) -> str:
    """The redirection target (already quoted) of a standard stream."""
    if value is None:
        return default
    if isinstance(value, str):
        return shlex.quote(value)
    if value == subprocess.DEVNULL:
        return "/dev/null"
    raise RemoteCommandError(
        f"{what}={value!r} is not supported on a remote location (use a path or subprocess.DEVNULL)",
        retryable=False,
    )


def job_command_line(
    command: list[str],
    environment: Mapping[str, str] | None,
    workdir: str | None,
    stdin: int | str | None,
    stdout: int | str | None,
    stderr: int | str | None,
    capture_output: bool,
) -> str:
    """Return the command line given to the remote login shell to run ``command``.

    A first ``sh`` starts ``setsid sh -c SCRIPT`` in the background (not a group leader, so
    ``setsid`` does not fork: the inner shell leads a new session and process group whose id
    is ``$!``), prints that id as the first line of the channel's standard output and waits for
    it, exiting with its status (``128 + n`` when killed by signal ``n``). SCRIPT changes to
    ``workdir``, creates the parent directories of the output files and ``exec``s
    ``env K=V ... command`` with the redirections. Every word is quoted with
    :func:`shlex.quote`. Channel standard output after the first line is the command's output
    when it is captured; channel standard error only carries the wrapper's own errors.

    Raises:
        RemoteCommandError: if an environment name is invalid or a redirection is unsupported.
    """
    words = [shlex.quote(word) for word in command]
    if environment:
        bad = [name for name in environment if not _NAME.match(name)]
        if bad:
            raise RemoteCommandError(f"invalid environment variable names: {bad}", retryable=False)
        assignments = [shlex.quote(f"{name}={value}") for name, value in environment.items()]
        words = ["env", *assignments, *words]
    in_target = _redirect(stdin, "stdin", "/dev/null")
    out_target = _redirect(stdout, "stdout", "" if capture_output else "/dev/null")
    err_target = _redirect(stderr, "stderr", "&1")
    steps: list[str] = []
    if workdir:
        steps.append(f"cd -- {shlex.quote(workdir)}")
    parents = sorted(
        {
            posixpath.dirname(path)
            for path in (stdout, stderr)
            if isinstance(path, str) and posixpath.dirname(path)
        }
    )
    if parents:
        steps.append("mkdir -p -- " + " ".join(shlex.quote(parent) for parent in parents))
    redirections = f"<{in_target}"
    if out_target:
        redirections += f" >{out_target}"
    redirections += " 2>&1" if err_target == "&1" else f" 2>{err_target}"
    steps.append(f"exec {' '.join(words)} {redirections}")
    return (
        "exec sh -c "
        + shlex.quote('setsid sh -c "$1" & echo $!; wait $!')
        + " sh "
        + shlex.quote(" && ".join(steps))
    )


def kill_group_command_line(pgid: int) -> str:
    """Return the remote command line killing the process group ``pgid`` (SIGKILL)."""
    return f"kill -s KILL -- -{int(pgid)} 2>/dev/null; true"


def exit_code(process: asyncssh.SSHClientProcess[bytes]) -> int:
    """The exit code of a finished remote command; ``128 + n`` when killed by signal ``n``."""
    if process.exit_status is not None and process.exit_status >= 0:
        return process.exit_status
    if process.exit_signal is not None:
        name = process.exit_signal[0]
        try:
            return 128 + int(signal.Signals[f"SIG{name}"])
        except KeyError:
            return 255
    return 255


class SSHStream(StreamWrapper):
    """A :class:`StreamWrapper` over the standard output (read) or input (write) of a channel."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes], writable: bool) -> None:
        self._process = process
        self._writable = writable
        self.eof = False
        self._closed = False

    async def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes (everything if ``None``); ``b""`` at the end.

        Raises:
            TransferError: if this is a write stream or the connection was lost.
        """
        if self._writable:
            raise TransferError("this stream is write-only", retryable=False)
        try:
            data = await self._process.stdout.read(-1 if size is None else size)
        except (asyncssh.Error, OSError) as exc:
            raise TransferError(f"ssh stream broken: {exc}") from exc
        if not data:
            self.eof = True
        return data

    async def write(self, data: bytes) -> None:
        """Write ``data``, waiting for the channel's window.

        Raises:
            TransferError: if this is a read stream, it was closed, or the channel broke.
        """
        if not self._writable or self._closed:
            raise TransferError("this stream is not writable", retryable=False)
        try:
            self._process.stdin.write(data)
            await self._process.stdin.drain()
        except (asyncssh.Error, OSError) as exc:
            raise TransferError(f"the remote command closed its input: {exc}") from exc

    async def close(self) -> None:
        """Send end-of-file to the remote command (write streams). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writable:
            with contextlib.suppress(asyncssh.Error, OSError):
                self._process.stdin.write_eof()
