"""Helpers shared by connectors: process streams, process-group kills, tar-stream copies.

Also :class:`ConnectorWrapper`, the base of connectors stacked on another one through
``wraps`` (containers on a host, batch queues behind SSH).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import IO

from streamflow.core.data import StreamWrapper
from streamflow.core.deployment import Connector, ExecutionLocation
from streamflow.errors import TransferError

__all__ = [
    "ConnectorWrapper",
    "ProcessStream",
    "kill_process_group",
    "process_stream_reader",
    "process_stream_writer",
    "stream_copy",
]


class ConnectorWrapper(Connector):
    """A connector stacked on another: it runs its commands through ``connector``.

    The deployment manager builds a wrapper class with the wrapped deployment's connector when
    the deployment has ``wraps``; other connector classes ignore ``wraps`` (with a warning).

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        connector: the connector of the wrapped deployment.
        service: the service of the wrapped deployment to run on, if any.
    """

    def __init__(
        self, deployment_name: str, config_dir: str, connector: Connector, service: str | None = None
    ) -> None:
        super().__init__(deployment_name, config_dir)
        self.connector = connector
        self.service = service


async def kill_process_group(process: asyncio.subprocess.Process) -> None:
    """Kill ``process`` and every process of its group (it must lead a session), then reap it.

    Unread standard output is drained and discarded. The wait is shielded, so that a cancelled caller still leaves no zombie behind.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await asyncio.shield(_reap(process))


async def _reap(process: asyncio.subprocess.Process) -> None:
    # A full, paused stdout pipe is never seen closed, and wait() would never return: drain it.
    if process.stdout is not None:
        while await process.stdout.read(2**16):
            pass
    await process.wait()


class ProcessStream(StreamWrapper):
    """A :class:`StreamWrapper` over the standard output or input of a subprocess."""

    def __init__(
        self, reader: asyncio.StreamReader | None = None, writer: asyncio.StreamWriter | None = None
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.eof = False
        self._closed = False

    async def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes (everything if ``None``); ``b""`` at the end.

        Raises:
            TransferError: if this is a write stream.
        """
        if self._reader is None:
            raise TransferError("this stream is write-only", retryable=False)
        data = await self._reader.read(-1 if size is None else size)
        if not data:
            self.eof = True
        return data

    async def write(self, data: bytes) -> None:
        """Write ``data``, waiting for the subprocess to consume it.

        Raises:
            TransferError: if this is a read stream, or the subprocess closed its input.
        """
        if self._writer is None or self._closed:
            raise TransferError("this stream is not writable", retryable=False)
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise TransferError(f"the receiving process closed its input: {exc}") from exc

    async def close(self) -> None:
        """Close the subprocess's input (write streams). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self._writer.wait_closed()


def _read_tail(file: IO[bytes], limit: int = 4096) -> str:
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(max(0, size - limit))
    return file.read().decode(errors="replace").strip()


async def _spawn(
    command: Sequence[str],
    stdin: int,
    stdout: int,
    stderr: IO[bytes],
    cwd: str | None,
    env: Mapping[str, str] | None,
) -> asyncio.subprocess.Process:
    if not command:
        raise TransferError("empty stream command", retryable=False)
    try:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )
    except OSError as exc:
        raise TransferError(f"cannot start {command[0]!r}: {exc}", retryable=False) from exc


@contextlib.asynccontextmanager
async def process_stream_reader(
    command: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[ProcessStream]:
    """Run ``command`` on this machine and stream its standard output.

    On a normal exit after reading to the end, a failure exit code raises
    :class:`~streamflow.errors.TransferError` with the tail of standard error; if the caller
    stopped before the end, the process is killed. On an error or cancellation it is killed.
    """
    with tempfile.TemporaryFile() as err:
        process = await _spawn(command, asyncio.subprocess.DEVNULL, asyncio.subprocess.PIPE, err, cwd, env)
        assert process.stdout is not None
        stream = ProcessStream(reader=process.stdout)
        try:
            yield stream
        except BaseException:
            await kill_process_group(process)
            raise
        if not stream.eof and process.stdout.at_eof() is False:
            await kill_process_group(process)
            return
        returncode = await process.wait()
        if returncode != 0:
            raise TransferError(f"{command[0]} exited with {returncode}: {_read_tail(err)}")


@contextlib.asynccontextmanager
async def process_stream_writer(
    command: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None
) -> AsyncIterator[ProcessStream]:
    """Run ``command`` on this machine and stream into its standard input.

    Leaving the block closes the input and waits for the process; a failure exit code raises
    :class:`~streamflow.errors.TransferError` with the tail of standard error. On an error or
    cancellation the process is killed.
    """
    with tempfile.TemporaryFile() as err:
        process = await _spawn(command, asyncio.subprocess.PIPE, asyncio.subprocess.DEVNULL, err, cwd, env)
        assert process.stdin is not None
        stream = ProcessStream(writer=process.stdin)
        try:
            yield stream
            await stream.close()
        except BaseException:
            await kill_process_group(process)
            raise
        returncode = await process.wait()
        if returncode != 0:
            raise TransferError(f"{command[0]} exited with {returncode}: {_read_tail(err)}")


async def _pump(reader: StreamWrapper, writers: Sequence[StreamWrapper], buffer_size: int) -> None:
    while chunk := await reader.read(buffer_size):
        for writer in writers:
            await writer.write(chunk)


async def _run_checked(connector: Connector, location: ExecutionLocation, command: list[str]) -> None:
    result = await connector.run(location, command, capture_output=True)
    if isinstance(result, tuple) and result[1] != 0:
        raise TransferError(f"{command[0]} failed on {location}: {result[0]}", location=str(location))


async def stream_copy(
    src_connector: Connector,
    src_location: ExecutionLocation,
    src: str,
    dst_connector: Connector,
    dst_locations: Sequence[ExecutionLocation],
    dst: str,
    buffer_size: int = 2**16,
) -> None:
    """Copy ``src`` to ``dst`` on every destination with a tar stream through this process.

    The source runs ``tar chf - -C <parent> <name>`` (links are followed); each destination
    extracts into a fresh directory next to ``dst`` and moves the result to ``dst`` (replacing
    it), so a half-written copy is never visible at ``dst``. POSIX locations with ``tar``,
    ``mkdir``, ``rm`` and ``mv`` are assumed.

    Raises:
        TransferError: if a side failed.
    """
    if not dst_locations:
        return
    src_parent, src_name = posixpath.split(src.rstrip("/")) if src != "/" else ("/", ".")
    dst_parent = posixpath.dirname(dst.rstrip("/")) or "/"
    staging = posixpath.join(dst_parent, f".sf-transfer-{uuid.uuid4().hex}")
    for location in dst_locations:
        await _run_checked(dst_connector, location, ["mkdir", "-p", staging])
    try:
        async with contextlib.AsyncExitStack() as stack:
            reader = await stack.enter_async_context(
                src_connector.get_stream_reader(
                    ["tar", "chf", "-", "-C", src_parent or ".", src_name], src_location
                )
            )
            writers = [
                await stack.enter_async_context(
                    dst_connector.get_stream_writer(["tar", "xf", "-", "-C", staging], location)
                )
                for location in dst_locations
            ]
            await _pump(reader, writers, buffer_size)
        for location in dst_locations:
            await _run_checked(dst_connector, location, ["rm", "-rf", dst])
            await _run_checked(dst_connector, location, ["mv", posixpath.join(staging, src_name), dst])
    finally:
        for location in dst_locations:
            with contextlib.suppress(TransferError):
                await _run_checked(dst_connector, location, ["rm", "-rf", staging])
