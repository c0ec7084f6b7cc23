"""The ``local`` connector: this machine, as the single location ``localhost``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from streamflow.connectors.base import (
    kill_process_group,
    process_stream_reader,
    process_stream_writer,
    stream_copy,
)
from streamflow.connectors.procguard import forget_executable, kill_leftovers, locate, reaper
from streamflow.core.data import StreamWrapper
from streamflow.core.deployment import Connector, ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.core.scheduling import AvailableLocation, Hardware
from streamflow.errors import RemoteCommandError, TransferError

__all__ = ["LOCALHOST", "LocalConnector"]

LOCALHOST = "localhost"
"""The name of the only location of a local deployment."""

_NOT_RETRYABLE = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)


def _mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _memory_mb() -> float:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        return 0.0


def _remove(path: str) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _copy_path(src: str, dst: str, read_only: bool) -> None:
    """Copy (or link, when ``read_only``) ``src`` to ``dst`` on this machine; blocking."""
    if not os.path.exists(src):
        raise FileNotFoundError(src)
    real_src = os.path.realpath(src)
    if os.path.lexists(dst) and os.path.realpath(dst) == real_src:
        if not read_only and os.path.islink(dst):
            os.unlink(dst)  # a writable copy must not write through a link into the source
        else:
            return
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    _remove(dst)
    if read_only:
        os.symlink(real_src, dst)
    elif os.path.isdir(real_src):
        shutil.copytree(real_src, dst, symlinks=False)
    else:
        shutil.copy2(real_src, dst)


class LocalConnector(Connector):
    """Runs commands as subprocesses of this process, and copies files with ``shutil``.

    Commands are argument lists, never shell strings. Each command leads its own process
    group, watched by the reaper of :mod:`streamflow.connectors.procguard` (it dies with this
    process), with umask 077; when it ends the rest of its group is killed, and a timeout (or
    a cancellation, or :meth:`undeploy`) kills it with its children.
    Read-only copies are symbolic links to the source; writable ones are real copies.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        transferBufferSize: bytes per chunk for streamed copies.
    """

    def __init__(self, deployment_name: str, config_dir: str, transferBufferSize: int = 2**16) -> None:
        super().__init__(deployment_name, config_dir)
        self.transfer_buffer_size = transferBufferSize
        self._processes: set[asyncio.subprocess.Process] = set()

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``local`` deployment's ``config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://streamflow.di.unito.it/schemas/deployment/connector/local.json",
            "type": "object",
            "properties": {
                "transferBufferSize": {
                    "type": "integer",
                    "minimum": 1,
                    "default": 2**16,
                    "description": "Bytes per chunk for streamed copies",
                }
            },
            "additionalProperties": False,
        }

    # --- lifecycle ------------------------------------------------------------------------------

    async def deploy(self, external: bool) -> None:
        """Nothing to bring up: this machine is always there."""

    async def undeploy(self, external: bool) -> None:
        """Kill the commands still running through this connector."""
        for process in list(self._processes):
            await kill_process_group(process)
        self._processes.clear()

    async def get_available_locations(self, service: str | None = None) -> dict[str, AvailableLocation]:
        """Return the single location ``localhost``: one slot per CPU, the machine's memory."""
        cores = os.cpu_count() or 1
        tmp = tempfile.gettempdir()
        mount = _mount_point(tmp)
        storage = {mount: shutil.disk_usage(mount).free / 2**20}
        return {
            LOCALHOST: AvailableLocation(
                name=LOCALHOST,
                deployment=self.deployment_name,
                service=service,
                hostname="localhost",
                local=True,
                slots=cores,
                hardware=Hardware(cores=float(cores), memory=_memory_mb(), storage=storage),
            )
        }

    # --- commands -------------------------------------------------------------------------------

    def _resolve(self, path: str, workdir: str | None) -> str:
        return path if os.path.isabs(path) else os.path.join(workdir or os.getcwd(), path)

    async def run(
        self,
        location: ExecutionLocation,
        command: list[str],
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        stdin: int | str | None = None,
        stdout: int | str | None = None,
        stderr: int | str | None = None,
        capture_output: bool = False,
        timeout: float | None = None,
        job_name: str | None = None,
        *,
        inherit_environment: bool = True,
    ) -> tuple[str, int] | int:
        """Run ``command`` as a subprocess (see :meth:`Connector.run`); never returns ``None``.

        ``workdir`` defaults to the current directory; relative ``stdin``/``stdout``/``stderr``
        paths are resolved against it, and the parent directories of output files are created.
        With ``inherit_environment=False`` (a job: CWL defines its whole environment) the
        command gets ``environment`` alone, none of this process's variables.
        """
        if not command:
            raise RemoteCommandError("empty command", location=str(location), retryable=False)
        if not inherit_environment:
            env: dict[str, str] | None = dict(environment or {})
        else:
            env = {**os.environ, **environment} if environment else None
        with contextlib.ExitStack() as files:
            try:
                stdin_arg: int = subprocess.DEVNULL
                if isinstance(stdin, str):
                    stdin_arg = _open_fd(files, self._resolve(stdin, workdir), os.O_RDONLY)
                elif isinstance(stdin, int):
                    stdin_arg = stdin
                stdout_arg: int = subprocess.PIPE if capture_output else subprocess.DEVNULL
                if isinstance(stdout, str):
                    stdout_arg = _open_output(files, self._resolve(stdout, workdir))
                elif isinstance(stdout, int):
                    stdout_arg = stdout
                stderr_arg: int = subprocess.STDOUT
                if isinstance(stderr, str):
                    stderr_arg = _open_output(files, self._resolve(stderr, workdir))
                elif isinstance(stderr, int):
                    stderr_arg = stderr
                reaper().start()  # so that the job is registered right after it starts
                executable = _executable(command, env, workdir)
                try:
                    process, exited = await _spawn(command, executable, stdin_arg, stdout_arg, stderr_arg,
                                                   workdir, env)
                except OSError:
                    if executable is None or not forget_executable(command, env):
                        raise
                    # The file found on PATH earlier is gone: search again.
                    executable = _executable(command, env, workdir)
                    process, exited = await _spawn(command, executable, stdin_arg, stdout_arg, stderr_arg,
                                                   workdir, env)
            except OSError as exc:
                raise RemoteCommandError(
                    f"cannot run {command[0]!r} on {location}: {exc}",
                    location=str(location),
                    retryable=not isinstance(exc, _NOT_RETRYABLE),
                ) from exc
            files.close()  # the child has its own copies
            self._processes.add(process)
            reaper().watch(process.pid)  # its group dies with this process (procguard.py)
            pipe = process.stdout
            reader = asyncio.ensure_future(pipe.read()) if pipe is not None else None
            try:
                async with asyncio.timeout(timeout):
                    # The exit itself, not the end of its pipes (Process.wait() on Python 3.11
                    # waits for both, and a background child may hold them for ever).
                    await asyncio.shield(exited)
                    # What it left in the background must not outlive it (nor hold its pipe).
                    kill_leftovers(process.pid)
                    output = await reader if reader is not None else None
                    await process.wait()
            except TimeoutError as exc:
                _cancel(reader)
                await kill_process_group(process)
                raise CommandTimeoutError(
                    f"{command[0]!r} on {location} timed out after {timeout} s", location=str(location)
                ) from exc
            except BaseException:
                _cancel(reader)
                await kill_process_group(process)
                raise
            finally:
                reaper().forget(process.pid)
                self._processes.discard(process)
        returncode = process.returncode
        assert returncode is not None
        if capture_output:
            return (output or b"").decode(errors="replace").rstrip(), returncode
        return returncode

    # --- copies ---------------------------------------------------------------------------------

    async def _copy(
        self, src: str, dst: str, read_only: bool, location: ExecutionLocation | None = None
    ) -> None:
        try:
            await asyncio.to_thread(_copy_path, src, dst, read_only)
        except FileNotFoundError as exc:
            raise TransferError(f"cannot copy {src} to {dst}: no such file", retryable=False) from exc
        except (OSError, shutil.Error) as exc:
            raise TransferError(
                f"cannot copy {src} to {dst}: {exc}", location=str(location) if location else None
            ) from exc

    async def copy_local_to_remote(
        self, src: str, dst: str, locations: Sequence[ExecutionLocation], read_only: bool = False
    ) -> None:
        """Copy ``src`` to ``dst``: once, since every local location shares this file system."""
        if locations:
            await self._copy(src, dst, read_only, locations[0])

    async def copy_remote_to_local(
        self, src: str, dst: str, location: ExecutionLocation, read_only: bool = False
    ) -> None:
        """Copy ``src`` to ``dst`` on this machine."""
        await self._copy(src, dst, read_only, location)

    async def copy_remote_to_remote(
        self,
        src: str,
        dst: str,
        locations: Sequence[ExecutionLocation],
        source_location: ExecutionLocation,
        source_connector: Connector | None = None,
        read_only: bool = False,
    ) -> None:
        """Copy from ``source_location`` to this machine.

        A source on this machine (this connector, or a location marked ``local``) is copied
        directly; any other source is streamed as a tar archive from ``source_connector``.
        """
        if not locations:
            return
        if source_connector is None or source_connector is self or source_location.local:
            await self._copy(src, dst, read_only, source_location)
            return
        await stream_copy(
            source_connector, source_location, src, self, locations[:1], dst, self.transfer_buffer_size
        )

    def get_stream_reader(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream the standard output of ``command`` run on this machine."""
        return _as_wrapper(process_stream_reader(command))

    def get_stream_writer(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream into the standard input of ``command`` run on this machine."""
        return _as_wrapper(process_stream_writer(command))


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The protocol of ``asyncio.create_subprocess_exec``, plus a future done when the process exits."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=2**16, loop=loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


async def _spawn(command: list[str], executable: str | None, stdin: int, stdout: int, stderr: int,
                 workdir: str | None, env: dict[str, str] | None) -> tuple[asyncio.subprocess.Process, asyncio.Future[None]]:
    """``asyncio.create_subprocess_exec`` of ``command`` in a new session with umask 077; with
    the future of its exit (woken by the child watcher, never polled)."""
    loop = asyncio.get_running_loop()
    protocol = _ExitProtocol(loop)
    transport, _ = await loop.subprocess_exec(
        lambda: protocol, *command, executable=executable, stdin=stdin, stdout=stdout, stderr=stderr,
        cwd=workdir, env=env, start_new_session=True, umask=0o077)
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


def _executable(command: list[str], env: dict[str, str] | None, workdir: str | None) -> str | None:
    """The file to execute for ``command`` (None: let ``exec`` search ``PATH``).

    Raises:
        FileNotFoundError: not found (127).
        PermissionError: found, not executable (126).
    """
    executable, problem = locate(command, env, workdir)
    if problem:
        error = FileNotFoundError if problem == 127 else PermissionError
        raise error(errno.ENOENT if problem == 127 else errno.EACCES,
                    "not found" if problem == 127 else "not executable", command[0])
    return executable


def _open_fd(files: contextlib.ExitStack, path: str, flags: int) -> int:
    """A raw descriptor of ``path`` (closed with ``files``): no Python file object per job."""
    fd = os.open(path, flags | os.O_CLOEXEC, 0o666)
    files.callback(os.close, fd)
    return fd


def _open_output(files: contextlib.ExitStack, path: str) -> int:
    """Open ``path`` for a command's output (truncated), creating its missing parent directories."""
    try:
        return _open_fd(files, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return _open_fd(files, path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


def _cancel(reader: asyncio.Future[bytes] | None) -> None:
    if reader is not None:
        reader.cancel()


@contextlib.asynccontextmanager
async def _as_wrapper(manager: AbstractAsyncContextManager[Any]) -> AsyncIterator[StreamWrapper]:
    async with manager as stream:
        yield stream
