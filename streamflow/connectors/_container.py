"""The shared machinery of the container and cluster connectors (docker, singularity, kubernetes).

A :class:`ContainerConnector` reaches its locations through a client CLI (``docker``,
``podman``, ``singularity``, ``kubectl``) run as argument lists in subprocesses of this process.
Subclasses say how to run a command inside a location (:meth:`ContainerConnector.exec_argv`) and,
optionally, how to move tar streams in and out of it; this module does the rest:

* ``run`` wraps the command in ``sh -c`` inside the container only for its redirections (every
  word ``shlex.quote``\\ d), tags it with a unique ``STREAMFLOW_JOB`` variable and, on timeout or
  cancellation, kills every process of the container carrying that tag (the command and all its
  children, even those that left its process group), then the client.
* copies are tar streams, extracted into a fresh directory next to the destination and moved
  into place, so a half-written copy is never visible at the destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import shlex
import shutil
import subprocess
import tempfile
import uuid
from abc import abstractmethod
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from streamflow.connectors.base import kill_process_group, process_stream_reader, process_stream_writer
from streamflow.core.data import StreamWrapper
from streamflow.core.deployment import Connector, ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.core.scheduling import AvailableLocation, Hardware
from streamflow.errors import DeploymentError, RemoteCommandError, TransferError

__all__ = ["JOB_TAG", "CommandResult", "ContainerConnector", "hardware_probe", "parse_hardware"]

JOB_TAG = "STREAMFLOW_JOB"
"""The environment variable that tags the processes of one ``run`` inside a container."""

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

hardware_probe = ["sh", "-c", "nproc; grep MemTotal /proc/meminfo; df -Pk / | tail -n 1"]
"""The command run once per location to measure its cores, memory and root storage."""


def parse_hardware(output: str) -> Hardware:
    """Read the output of :data:`hardware_probe` (missing parts count as zero)."""
    lines = output.splitlines()
    cores = memory = 0.0
    storage: dict[str, float] = {}
    with contextlib.suppress(ValueError, IndexError):
        cores = float(lines[0].strip())
    with contextlib.suppress(ValueError, IndexError):
        memory = float(lines[1].split()[1]) / 1024
    with contextlib.suppress(ValueError, IndexError):
        fields = lines[2].split()
        storage = {fields[5]: float(fields[3]) / 1024}
    return Hardware(cores=cores, memory=memory, storage=storage)


class CommandResult:
    """The outcome of a client command: exit code, standard output and standard error."""

    def __init__(self, returncode: int, stdout: bytes, stderr: bytes) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr

    @property
    def error(self) -> str:
        """The tail of standard error (or of standard output when it is empty), decoded."""
        text = (self.stderr or self.stdout).decode(errors="replace").strip()
        return text[-2000:]


def _redirections(
    stdin: int | str | None, stdout: int | str | None, stderr: int | str | None, capture: bool
) -> list[str]:
    words: list[str] = []
    if isinstance(stdin, str):
        words.append(f"<{shlex.quote(stdin)}")
    elif stdin is None or stdin == subprocess.DEVNULL:
        words.append("</dev/null")
    if isinstance(stdout, str):
        words.append(f">{shlex.quote(stdout)}")
    elif stdout == subprocess.DEVNULL or (stdout is None and not capture):
        words.append(">/dev/null")
    if isinstance(stderr, str):
        words.append(f"2>{shlex.quote(stderr)}")
    elif stderr == subprocess.DEVNULL:
        words.append("2>/dev/null")
    elif stderr is None:
        words.append("2>&1")
    return words


def _parents(*paths: int | str | None) -> list[str]:
    parents = {posixpath.dirname(p) for p in paths if isinstance(p, str)}
    return sorted(p for p in parents if p and p != "/")


def build_script(
    command: Sequence[str],
    stdin: int | str | None,
    stdout: int | str | None,
    stderr: int | str | None,
    capture: bool,
    environment: Mapping[str, str] | None = None,
) -> str:
    """The ``sh -c`` script that runs ``command`` with its redirections (every word quoted).

    Parent directories of the output files are created first (relative ones against the
    working directory). ``environment`` (if given) is exported by the script itself, for
    clients with no option to set it.
    """
    parts: list[str] = []
    for key, value in (environment or {}).items():
        parts.append(f"{key}={shlex.quote(value)}; export {key};")
    parents = _parents(stdout, stderr)
    if parents:
        parts.append("mkdir -p -- " + " ".join(shlex.quote(p) for p in parents) + " &&")
    parts.append("exec " + " ".join(shlex.quote(word) for word in command))
    parts.extend(_redirections(stdin, stdout, stderr, capture))
    return " ".join(parts)


def kill_script(tag: str) -> list[str]:
    """The command that kills, inside a container, every process whose environment has ``tag``."""
    script = (
        "for p in /proc/[0-9]*; do "
        f"if tr '\\0' '\\n' <\"$p/environ\" 2>/dev/null | grep -qx {shlex.quote(f'{JOB_TAG}={tag}')}; "
        'then kill -9 "${p#/proc/}" 2>/dev/null; fi; done; true'
    )
    return ["sh", "-c", script]


class ContainerConnector(Connector):
    """A connector whose locations are reached through a client CLI (see the module docstring).

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        transfer_buffer_size: bytes per chunk for copies streamed through this process.
    """

    client_name = "client"
    """The name of the client in messages (``docker``, ``kubectl``...)."""

    def __init__(self, deployment_name: str, config_dir: str, transfer_buffer_size: int = 2**16) -> None:
        super().__init__(deployment_name, config_dir)
        self.transfer_buffer_size = transfer_buffer_size
        self._hardware: dict[str, Hardware] = {}
        self._semaphore: asyncio.Semaphore | None = None

    # --- what subclasses provide ----------------------------------------------------------------

    @abstractmethod
    def client_env(self) -> dict[str, str] | None:
        """The environment of client subprocesses (``None``: this process's)."""

    @abstractmethod
    def exec_argv(
        self,
        location: ExecutionLocation,
        command: Sequence[str],
        *,
        interactive: bool = False,
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> list[str]:
        """The client argv that runs ``command`` inside ``location`` (stdin attached if ``interactive``)."""

    @abstractmethod
    async def locations(self, service: str | None = None) -> dict[str, ExecutionLocation]:
        """The running locations of ``service`` (or of every service), by name."""

    def tar_out_argv(self, location: ExecutionLocation, src: str) -> list[str]:
        """The client argv writing on its standard output a tar of ``src`` named by its base name."""
        parent, name = posixpath.split(src.rstrip("/") or "/")
        return self.exec_argv(location, ["tar", "chf", "-", "-C", parent or "/", name or "."])

    def tar_in_argv(self, location: ExecutionLocation, directory: str) -> list[str]:
        """The client argv extracting the tar on its standard input into ``directory``."""
        return self.exec_argv(location, ["tar", "xf", "-", "-C", directory], interactive=True)

    # --- client commands ------------------------------------------------------------------------

    async def client(
        self, argv: Sequence[str], input: bytes | None = None, timeout: float | None = None
    ) -> CommandResult:
        """Run a client command to completion and return its result.

        Raises:
            DeploymentError: if the client is not installed.
            TimeoutError: if ``timeout`` expired (the client is killed).
        """
        semaphore = self._semaphore or contextlib.nullcontext()
        async with semaphore:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    env=self.client_env(),
                    start_new_session=True,
                )
            except FileNotFoundError as exc:
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: {argv[0]!r} is not installed", retryable=False
                ) from exc
            try:
                async with asyncio.timeout(timeout):
                    out, err = await process.communicate(input)
            except BaseException:
                await kill_process_group(process)
                raise
        assert process.returncode is not None
        return CommandResult(process.returncode, out, err)

    async def checked(self, argv: Sequence[str], what: str, timeout: float | None = None) -> CommandResult:
        """Run a client command; a failure exit raises :class:`DeploymentError` saying ``what``."""
        result = await self.client(argv, timeout=timeout)
        if result.returncode != 0:
            raise DeploymentError(f"deployment {self.deployment_name!r}: cannot {what}: {result.error}")
        return result

    # --- locations ------------------------------------------------------------------------------

    async def get_available_locations(self, service: str | None = None) -> dict[str, AvailableLocation]:
        """One location per running container, with the cores, memory and storage it sees."""
        result: dict[str, AvailableLocation] = {}
        for name, location in (await self.locations(service)).items():
            key = str(location)
            if key not in self._hardware:
                probe = await self.client(self.exec_argv(location, hardware_probe))
                out = probe.stdout.decode(errors="replace") if probe.returncode == 0 else ""
                self._hardware[key] = parse_hardware(out)
            hardware = self._hardware[key]
            result[name] = AvailableLocation(
                name=location.name,
                deployment=location.deployment,
                service=location.service,
                hostname=location.hostname,
                local=False,
                slots=max(1, int(hardware.cores)),
                hardware=hardware,
            )
        return result

    # --- commands -------------------------------------------------------------------------------

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
    ) -> tuple[str, int] | int:
        """Run ``command`` inside ``location`` (see :meth:`Connector.run`); never returns ``None``.

        Paths are inside the container, relative ones against ``workdir``. A missing
        ``workdir`` or a stopped container raises :class:`RemoteCommandError`.
        """
        if not command:
            raise RemoteCommandError("empty command", location=str(location), retryable=False)
        for key in environment or {}:
            if not _NAME.match(key):
                raise RemoteCommandError(
                    f"invalid environment variable name {key!r}", location=str(location), retryable=False
                )
        tag = uuid.uuid4().hex
        env = {**(environment or {}), JOB_TAG: tag}
        script = build_script(command, stdin, stdout, stderr, capture_output)
        argv = self.exec_argv(location, ["sh", "-c", script], workdir=workdir, environment=env)
        try:
            result = await self.client(argv, timeout=timeout)
        except TimeoutError as exc:
            await self._kill_tagged(location, tag)
            raise CommandTimeoutError(
                f"{command[0]!r} on {location} timed out after {timeout} s", location=str(location)
            ) from exc
        except asyncio.CancelledError:
            await asyncio.shield(self._kill_tagged(location, tag))
            raise
        if result.returncode >= 125 and result.stderr.strip():
            # The script's own stderr is redirected: anything here comes from the client/engine.
            raise RemoteCommandError(
                f"cannot run {command[0]!r} on {location}: {result.error}",
                location=str(location),
                retryable=False,
            )
        if capture_output:
            return result.stdout.decode(errors="replace").rstrip(), result.returncode
        return result.returncode

    async def _kill_tagged(self, location: ExecutionLocation, tag: str) -> None:
        with contextlib.suppress(Exception):
            await self.client(self.exec_argv(location, kill_script(tag)), timeout=30)

    async def _checked_exec(self, location: ExecutionLocation, command: list[str]) -> None:
        result = await self.client(self.exec_argv(location, command))
        if result.returncode != 0:
            raise TransferError(f"{command[0]} failed on {location}: {result.error}", location=str(location))

    # --- copies ---------------------------------------------------------------------------------

    async def pipe(self, producer: Sequence[str], consumer: Sequence[str], where: str) -> None:
        """Run ``producer | consumer`` (both client or local commands) through an OS pipe.

        Raises:
            TransferError: if either side failed.
        """
        read_fd, write_fd = os.pipe()
        env = self.client_env()
        with tempfile.TemporaryFile() as err1, tempfile.TemporaryFile() as err2:
            processes: list[asyncio.subprocess.Process] = []
            try:
                try:
                    processes.append(
                        await asyncio.create_subprocess_exec(
                            *producer,
                            stdin=subprocess.DEVNULL,
                            stdout=write_fd,
                            stderr=err1,
                            env=env,
                            start_new_session=True,
                        )
                    )
                    processes.append(
                        await asyncio.create_subprocess_exec(
                            *consumer,
                            stdin=read_fd,
                            stdout=subprocess.DEVNULL,
                            stderr=err2,
                            env=env,
                            start_new_session=True,
                        )
                    )
                finally:
                    os.close(read_fd)
                    os.close(write_fd)
                codes = [await p.wait() for p in processes]
            except OSError as exc:
                raise TransferError(f"cannot copy {where}: {exc}", retryable=False) from exc
            except BaseException:
                for process in processes:
                    await kill_process_group(process)
                raise
            for code, argv, err in ((codes[0], producer, err1), (codes[1], consumer, err2)):
                if code != 0:
                    err.seek(0)
                    tail = err.read().decode(errors="replace").strip()[-2000:]
                    raise TransferError(f"cannot copy {where}: {argv[0]} exited with {code}: {tail}")

    async def _stage(self, location: ExecutionLocation, dst: str) -> str:
        parent = posixpath.dirname(dst.rstrip("/")) or "/"
        staging = posixpath.join(parent, f".sf-transfer-{uuid.uuid4().hex}")
        await self._checked_exec(location, ["mkdir", "-p", staging])
        return staging

    async def _commit(self, location: ExecutionLocation, staging: str, name: str, dst: str) -> None:
        await self._checked_exec(
            location,
            ["sh", "-c", 'rm -rf -- "$2" && mv -- "$1" "$2"', "sh", posixpath.join(staging, name), dst],
        )

    async def _discard(self, location: ExecutionLocation, staging: str) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self.client(self.exec_argv(location, ["rm", "-rf", staging])))

    async def copy_local_to_remote(
        self, src: str, dst: str, locations: Sequence[ExecutionLocation], read_only: bool = False
    ) -> None:
        """Copy the local ``src`` to ``dst`` in each location (a tar stream; links followed)."""
        if not os.path.lexists(src):
            raise TransferError(f"cannot copy {src}: no such file", retryable=False)
        src = os.path.abspath(src)
        parent, name = os.path.split(src.rstrip("/")) if src != "/" else ("/", ".")
        for location in locations:
            staging = await self._stage(location, dst)
            try:
                await self.pipe(
                    ["tar", "chf", "-", "-C", parent, name],
                    self.tar_in_argv(location, staging),
                    f"{src} to {location}:{dst}",
                )
                await self._commit(location, staging, name, dst)
            finally:
                await self._discard(location, staging)

    async def copy_remote_to_local(
        self, src: str, dst: str, location: ExecutionLocation, read_only: bool = False
    ) -> None:
        """Copy ``src`` in ``location`` to the local ``dst`` (links in the source are followed)."""
        dst = os.path.abspath(dst)
        parent = os.path.dirname(dst)
        os.makedirs(parent, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".sf-transfer-", dir=parent)
        name = posixpath.basename(src.rstrip("/")) or "."
        try:
            await self.pipe(
                self.tar_out_argv(location, src),
                ["tar", "xf", "-", "-C", staging, "--no-same-owner"],
                f"{location}:{src} to {dst}",
            )
            extracted = os.path.join(staging, name)
            if not os.path.lexists(extracted):
                raise TransferError(f"cannot copy {location}:{src}: nothing was received", retryable=False)
            await asyncio.to_thread(_replace, extracted, dst)
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    def same_engine(self, other: Connector) -> bool:
        """Whether ``other`` reaches its locations with the same client and engine as this one."""
        return False

    async def copy_remote_to_remote(
        self,
        src: str,
        dst: str,
        locations: Sequence[ExecutionLocation],
        source_location: ExecutionLocation,
        source_connector: Connector | None = None,
        read_only: bool = False,
    ) -> None:
        """Copy ``src`` from ``source_location`` to ``dst`` in each of ``locations``.

        Between two locations of the same engine the tar stream goes from one client to the
        other through an OS pipe; otherwise through this process (``stream_copy``), which needs
        ``tar`` on both sides.
        """
        from streamflow.connectors.base import stream_copy

        source = source_connector or self
        if isinstance(source, ContainerConnector) and (source is self or self.same_engine(source)):
            name = posixpath.basename(src.rstrip("/")) or "."
            for location in locations:
                staging = await self._stage(location, dst)
                try:
                    await self.pipe(
                        source.tar_out_argv(source_location, src),
                        self.tar_in_argv(location, staging),
                        f"{source_location}:{src} to {location}:{dst}",
                    )
                    await self._commit(location, staging, name, dst)
                finally:
                    await self._discard(location, staging)
            return
        for location in locations:  # one stream per destination: each commits on its own
            await stream_copy(source, source_location, src, self, [location], dst, self.transfer_buffer_size)

    def get_stream_reader(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream the standard output of ``command`` run inside ``location``."""
        return _as_wrapper(process_stream_reader(self.exec_argv(location, command), env=self.client_env()))

    def get_stream_writer(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream into the standard input of ``command`` run inside ``location``."""
        return _as_wrapper(
            process_stream_writer(self.exec_argv(location, command, interactive=True), env=self.client_env())
        )


def _replace(src: str, dst: str) -> None:
    """Move ``src`` to ``dst``, first removing ``dst`` (a link itself, never what it points to)."""
    if os.path.islink(dst) or (os.path.lexists(dst) and not os.path.isdir(dst)):
        os.unlink(dst)
    elif os.path.isdir(dst):
        shutil.rmtree(dst)
    os.rename(src, dst)


@contextlib.asynccontextmanager
async def _as_wrapper(manager: AbstractAsyncContextManager[Any]) -> AsyncIterator[StreamWrapper]:
    async with manager as stream:
        yield stream
