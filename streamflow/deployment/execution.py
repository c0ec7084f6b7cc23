"""Running a prepared CWL job's command on a location, through its deployment's connector.

The CWL layer (:func:`streamflow.cwl.tool.execute_process`) prepares every job on this
machine: it stages the inputs and ``InitialWorkDir`` entries into the attempt's directory,
builds the command line and, once the command ended, collects the outputs from that
directory. :class:`ConnectorCommand` is the ``run`` it is given: it sends the command to the
job's location through :meth:`Connector.run`.

* On a location that shares this filesystem (``local``) the command runs as it is, with
  exactly the environment CWL defines (none of the engine's variables, which may hold bus
  credentials, reach the tool: the local connector is told not to inherit them; any other
  connector to this machine runs the command under ``env -i``).
* On any other location the attempt directory is copied there first, every path of this
  machine in the command, its environment and its redirections is rewritten to the path of
  the same data on the location (:class:`PathMap`: the attempt directory, and each input the
  DataManager placed there), the command runs in the copy, and the output directory is
  copied back, so outputs are collected (and mirrored) here while the location keeps its
  copy for the jobs that follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from streamflow.connectors.local import LocalConnector
from streamflow.core.deployment import Connector, ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.errors import JobFailedError, RemoteCommandError, TransferError

__all__ = ["ConnectorCommand", "PathMap", "use_pidfd_child_watcher"]

log = structlog.get_logger("streamflow.execution")



class _PidfdChildWatcher(asyncio.AbstractChildWatcher):
    """Waits for each child through a pidfd on the loop that started it (Linux >= 5.3).

    Python 3.11's default, ``ThreadedChildWatcher``, starts a thread per child process and
    waits for it to start: about a millisecond of the loop per job. This watcher adds the
    child's pidfd to the running loop's readers instead (what Python 3.12 does by default),
    taking the loop of each call, so it serves any number of loops over the process's life.
    """

    def add_child_handler(self, pid: int, callback: Callable[..., object], *args: Any) -> None:  # type: ignore[override]
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        loop._add_reader(pidfd, self._reap, loop, pid, pidfd, callback, args)  # type: ignore[attr-defined]

    @staticmethod
    def _reap(loop: asyncio.AbstractEventLoop, pid: int, pidfd: int, callback: Callable[..., object],
              args: tuple[Any, ...]) -> None:
        loop._remove_reader(pidfd)  # type: ignore[attr-defined]
        try:
            _, status = os.waitpid(pid, 0)
            returncode = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            # Reaped elsewhere: asyncio's kill()/send_signal() go through Popen.send_signal,
            # which polls first and so reaps a child that already exited. That Popen (the
            # transport's, the callback's argument) holds the status it read: report it, not
            # a made-up 255.
            popen = getattr(args[0], "_proc", None) if args else None
            known = getattr(popen, "returncode", None)
            returncode = known if isinstance(known, int) else 255
        finally:
            os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        return False  # a reader removes itself when its child exits

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        return None

    def close(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def __enter__(self) -> _PidfdChildWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def use_pidfd_child_watcher() -> bool:
    """On Python 3.11 and Linux, wait for asyncio's child processes through pidfds instead of a
    thread per child (a no-op elsewhere, and from Python 3.12, whose default already does so).

    Returns:
        Whether the pidfd watcher is in use.
    """
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        current = getattr(policy, "_watcher", None)
        if isinstance(current, _PidfdChildWatcher):
            return True
        if current is not None and not isinstance(current, asyncio.ThreadedChildWatcher):
            return False  # someone chose another watcher: leave it
        try:
            os.close(os.pidfd_open(os.getpid()))
        except OSError:  # an old kernel, or a sandbox without the call
            return False
        policy.set_child_watcher(_PidfdChildWatcher())
    return True


class PathMap:
    """Rewrites paths of this machine into paths on a location, by longest prefix.

    A prefix matches only at a path boundary (``/a/b`` maps ``/a/b`` and ``/a/b/c``, never
    ``/a/bc``), wherever it appears in a string (a shell command line holds several).

    Args:
        prefixes: path here -> path there.
    """

    def __init__(self, prefixes: Mapping[str, str]) -> None:
        self.prefixes = {k.rstrip("/") or "/": v.rstrip("/") or "/" for k, v in prefixes.items() if k}
        ordered = sorted(self.prefixes, key=len, reverse=True)
        self._pattern = (re.compile("|".join(f"{re.escape(p)}(?=/|$|[^A-Za-z0-9._-])" for p in ordered))
                         if ordered else None)

    def __call__(self, text: str) -> str:
        """``text`` with every mapped path rewritten."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: self.prefixes[m.group(0)], text)

    def path(self, path: str | None) -> str | None:
        """A single path rewritten (``None`` stays ``None``)."""
        return None if path is None else self(path)


class ConnectorCommand:
    """A :data:`streamflow.cwl.tool.RunCommand` that runs on a location through its connector.

    Args:
        connector: the connector of the job's deployment.
        location: where to run.
        job_name: the job (batch connectors name their submission after it).
        local_root: the attempt directory on this machine.
        remote_root: the attempt directory on the location (ignored on a local location).
        inputs: path here -> path on the location of each input placed there.
        environment: variables added for every command (e.g. ``STREAMFLOW_HOSTS``).
        output: where the command's own standard output and error go when the tool does
            not redirect them (None: this process's standard error).
    """

    def __init__(self, connector: Connector, location: ExecutionLocation, *, job_name: str, local_root: str,
                 remote_root: str | None = None, inputs: Mapping[str, str] | None = None,
                 environment: Mapping[str, str] | None = None,
                 output: Callable[[bytes], None] | None = None) -> None:
        self.connector = connector
        self.location = location
        self.job_name = job_name
        self.local_root = local_root
        self.remote_root = remote_root or local_root
        self.extra_environment = dict(environment or {})
        self.output = output
        self.paths = PathMap({} if location.local else {**dict(inputs or {}), local_root: self.remote_root})
        self.bytes_sent = 0

    async def __call__(self, command: list[str], *, environment: dict[str, str], workdir: str,
                       stdin: str | None = None, stdout: str | None = None, stderr: str | None = None,
                       timeout: float | None = None) -> int:
        """Run ``command`` (paths of this machine) on the location; return its exit code.

        Raises:
            JobFailedError: the time limit expired (not retryable), the command could not be
                started, or the location could not be reached (retryable).
        """
        try:
            if self.location.local:
                return await self._run_here(command, environment, workdir, stdin, stdout, stderr, timeout)
            return await self._run_there(command, environment, workdir, stdin, stdout, stderr, timeout)
        except CommandTimeoutError:
            raise JobFailedError(f"command exceeded its time limit of {timeout:g} seconds and was killed",
                                 retryable=False) from None
        except (RemoteCommandError, TransferError) as exc:
            raise JobFailedError(f"on {self.location}: {exc}", retryable=exc.retryable) from exc

    async def _run_here(self, command: list[str], environment: dict[str, str], workdir: str, stdin: str | None,
                        stdout: str | None, stderr: str | None, timeout: float | None) -> int:
        env = {**environment, **self.extra_environment}
        async with _OutputRelay(self.output) as relay:
            streams: dict[str, Any] = {
                "stdin": stdin, "stdout": stdout if stdout is not None else relay.fd,
                "stderr": stderr if stderr is not None else relay.fd, "timeout": timeout, "job_name": self.job_name}
            result: tuple[str, int] | int | None
            if isinstance(self.connector, LocalConnector):
                result = await self.connector.run(self.location, command, environment=env, workdir=workdir,
                                                  inherit_environment=False, **streams)
            else:  # another connector to this machine: ``env -i`` gives the same isolation
                argv = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
                result = await self.connector.run(self.location, argv, workdir=workdir, **streams)
        code = _exit_code(result)
        if code == 127 and not _on_path(command[0], env.get("PATH")):
            raise JobFailedError(f"command not found: {command[0]}", exit_code=127)
        return code

    async def _run_there(self, command: list[str], environment: dict[str, str], workdir: str, stdin: str | None,
                         stdout: str | None, stderr: str | None, timeout: float | None) -> int:
        root = self.remote_root
        await self.connector.copy_local_to_remote(self.local_root, root, [self.location])  # parents created
        # PATH stays the location's own: this machine's means nothing there.
        env = {k: self.paths(v) for k, v in environment.items() if k != "PATH"}
        env.update(self.extra_environment)
        out = self.paths.path(stdout) or posixpath.join(root, ".sf-stdout")
        err = self.paths.path(stderr) or posixpath.join(root, ".sf-stderr")
        result = await self.connector.run(
            self.location, [self.paths(arg) for arg in command], environment=env, workdir=self.paths(workdir),
            stdin=self.paths.path(stdin), stdout=out, stderr=err, timeout=timeout, job_name=self.job_name)
        code = _exit_code(result)
        outdir_here = workdir
        await self.connector.copy_remote_to_local(self.paths(outdir_here), outdir_here, self.location)
        if stdout is None or stderr is None:
            await self._relay_remote_output(None if stdout is not None else out, None if stderr is not None else err)
        return code

    async def _relay_remote_output(self, *paths: str | None) -> None:
        for path in paths:
            if path is None:
                continue
            result = await self.connector.run(self.location, ["cat", path], capture_output=True)
            text = result[0] if isinstance(result, tuple) else ""
            if text:
                data = (text + "\n").encode()
                if self.output is not None:
                    self.output(data)
                else:
                    sys.stderr.buffer.write(data)
                    sys.stderr.flush()


def _exit_code(result: tuple[str, int] | int | None) -> int:
    if isinstance(result, tuple):
        return result[1]
    if result is None:
        raise JobFailedError("the connector could not tell the command's exit code", retryable=False)
    return result


def _on_path(program: str, path: str | None) -> bool:
    if "/" in program:
        return os.path.exists(program)
    return any(os.path.exists(os.path.join(d, program)) for d in (path or "").split(os.pathsep) if d)


class _OutputRelay:
    """A pipe whose write end a local command inherits, read here into ``sink`` (or our stderr)."""

    def __init__(self, sink: Callable[[bytes], None] | None) -> None:
        self.sink = sink
        self.fd: int = sys.stderr.fileno()
        self._read: int | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _OutputRelay:
        if self.sink is None:
            return self
        self._read, self.fd = os.pipe()
        self._task = asyncio.create_task(asyncio.to_thread(self._pump, self._read, self.sink))
        return self

    @staticmethod
    def _pump(fd: int, sink: Callable[[bytes], None]) -> None:
        with open(fd, "rb", buffering=0, closefd=True) as pipe:
            while chunk := pipe.read(65536):
                sink(chunk)

    async def __aexit__(self, *exc: Any) -> None:
        if self._task is None:
            return
        os.close(self.fd)  # the child holds its own copy; EOF once it (and its children) closed it
        with contextlib.suppress(TimeoutError):
            # A child left in the background may hold the pipe open: stop waiting after a moment.
            await asyncio.wait_for(asyncio.shield(self._task), 2)
