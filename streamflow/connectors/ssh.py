"""The ``ssh`` connector: a set of nodes reached over SSH (asyncssh), one location per node."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import posixpath
import shlex
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from streamflow.connectors._ssh_config import SSHNode, read_secret, resolve_nodes, ssh_schema
from streamflow.connectors.base import stream_copy
from streamflow.core.data import StreamWrapper
from streamflow.core.deployment import Connector, ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.core.scheduling import AvailableLocation, Hardware
from streamflow.errors import ConfigError, ConnectorError, DeploymentError, RemoteCommandError, TransferError

if TYPE_CHECKING:
    import asyncssh

    from streamflow.connectors._ssh_pool import NodePool

# asyncssh (~0.2 s to import) and the modules using it are imported when a connector is
# built, not when the plugin registry imports this module.

__all__ = ["SSHConnector"]

_log = structlog.get_logger(__name__)
_warned_insecure: set[str] = set()

_PROBE = "nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; awk '/^MemTotal:/ {print $2}' /proc/meminfo; df -Pm /tmp | tail -n 1"


class SSHConnector(Connector):
    """Runs commands and copies files on SSH nodes, with connections reused across operations.

    Each node is a location named by its host name. Up to ``maxConnections`` connections per
    node are opened at :meth:`deploy` (or lazily) and carry up to ``maxConcurrentSessions``
    sessions (SSH channels) each; :meth:`undeploy` closes them. Host keys are checked against
    ``knownHostsFile`` unless ``checkHostKey`` is false.

    Commands run under ``setsid`` on the node (util-linux ``setsid`` and a POSIX ``sh`` are
    required): each leads its own session and process group, and a timeout, a cancellation or :meth:`undeploy` kills
    the whole group remotely with ``kill -s KILL -- -<pgid>`` over another channel. Copies
    between this machine and a node use SFTP into a temporary name beside the destination,
    then an atomic rename; copies on one node use ``cp``; others stream a tar archive through
    this process. ``read_only`` copies are plain copies.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``; relative paths are resolved against it.
        nodes: host names, or objects ``{hostname, port?, username?, sshKey?,
            sshKeyPassphraseFile?, passwordFile?}``.
        username: the login user (default: the local user).
        sshKey: the private key file.
        sshKeyPassphraseFile: the file holding the key's passphrase.
        passwordFile: the file holding the login password.
        port: the SSH port.
        maxConnections: connections per node.
        maxConcurrentSessions: sessions per connection.
        retries: further connection attempts after a failure.
        retryDelay: seconds between connection attempts.
        connectTimeout: seconds to connect and log in.
        checkHostKey: check host keys against ``knownHostsFile``.
        knownHostsFile: the known_hosts file.
        transferBufferSize: bytes per chunk for streamed copies.

    Raises:
        ConfigError: if a node is malformed, or a key or secret file cannot be read.
    """

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        nodes: Sequence[str | dict[str, Any]],
        username: str | None = None,
        sshKey: str | None = None,
        sshKeyPassphraseFile: str | None = None,
        passwordFile: str | None = None,
        port: int = 22,
        maxConnections: int = 1,
        maxConcurrentSessions: int = 10,
        retries: int = 3,
        retryDelay: float = 5.0,
        connectTimeout: float = 30.0,
        checkHostKey: bool = True,
        knownHostsFile: str = "~/.ssh/known_hosts",
        transferBufferSize: int = 2**16,
    ) -> None:
        from streamflow.connectors._ssh_pool import ConnectOptions

        super().__init__(deployment_name, config_dir)
        defaults = {
            "username": username,
            "sshKey": sshKey,
            "sshKeyPassphraseFile": sshKeyPassphraseFile,
            "passwordFile": passwordFile,
            "port": port,
        }
        self.nodes: list[SSHNode] = resolve_nodes(deployment_name, config_dir, nodes, defaults)
        self.transfer_buffer_size = transferBufferSize
        known_hosts = os.path.normpath(os.path.join(config_dir, os.path.expanduser(knownHostsFile)))
        self.options = ConnectOptions(
            max_connections=maxConnections,
            max_sessions=maxConcurrentSessions,
            retries=retries,
            retry_delay=retryDelay,
            connect_timeout=connectTimeout,
            known_hosts=known_hosts if checkHostKey else None,
        )
        self._credentials = {
            node.hostname: (self._client_keys(node), self._password(node)) for node in self.nodes
        }
        self._pools = self._new_pools()
        self._locations: dict[str, AvailableLocation] | None = None
        self._running: dict[int, _Running] = {}
        self._keys = itertools.count()

    def _new_pools(self) -> dict[str, NodePool]:
        from streamflow.connectors._ssh_pool import NodePool

        return {
            node.hostname: NodePool(
                self.deployment_name, node, self.options, *self._credentials[node.hostname]
            )
            for node in self.nodes
        }

    def _client_keys(self, node: SSHNode) -> list[asyncssh.SSHKey] | None:
        import asyncssh

        if node.ssh_key is None:
            return None
        passphrase = None
        if node.passphrase_file is not None:
            passphrase = read_secret(self.deployment_name, "sshKeyPassphraseFile", node.passphrase_file)
        try:
            return [asyncssh.read_private_key(node.ssh_key, passphrase)]
        except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "invalid key or wrong passphrase"
            raise ConfigError(
                f"deployment {self.deployment_name!r}: ssh config field 'sshKey': cannot load "
                f"{node.ssh_key}: {reason}"
            ) from None

    def _password(self, node: SSHNode) -> str | None:
        if node.password_file is None:
            return None
        return read_secret(self.deployment_name, "passwordFile", node.password_file)

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of an ``ssh`` deployment's ``config``."""
        return ssh_schema()

    # --- lifecycle ------------------------------------------------------------------------------

    async def deploy(self, external: bool) -> None:
        """Open a connection to every node and probe its hardware (the same when ``external``).

        Raises:
            DeploymentError: if a node cannot be reached (after the retries).
        """
        if self.options.known_hosts is None and self.deployment_name not in _warned_insecure:
            _warned_insecure.add(self.deployment_name)
            _log.warning("ssh_host_key_check_disabled", deployment=self.deployment_name)
        try:
            self._locations = await self._probe_all()
        except ConnectorError as exc:
            raise DeploymentError(str(exc), location=exc.location, retryable=exc.retryable) from exc

    async def undeploy(self, external: bool) -> None:
        """Kill the commands still running through this connector and close the connections."""
        running = list(self._running.values())
        await asyncio.gather(*(self._kill_group(command) for command in running))
        with contextlib.suppress(TimeoutError):  # let the killed commands report their status
            async with asyncio.timeout(5):
                await asyncio.gather(*(command.process.wait_closed() for command in running))
        self._running.clear()
        for pool in self._pools.values():
            await pool.close()
        self._pools = self._new_pools()
        self._locations = None

    async def _probe_all(self) -> dict[str, AvailableLocation]:
        results = await asyncio.gather(*(self._probe(node) for node in self.nodes))
        return {location.name: location for location in results}

    async def _probe(self, node: SSHNode) -> AvailableLocation:
        import asyncssh

        hardware: Hardware | None = None
        async with self._pools[node.hostname].session() as connection:
            try:
                result = await connection.run(_PROBE, check=False, encoding="utf-8")
            except (asyncssh.Error, OSError) as exc:
                raise ConnectorError(f"cannot probe {node.hostname}: {exc}", location=node.hostname) from exc
        lines = str(result.stdout or "").split("\n")
        try:
            cores = float(lines[0].strip())
            memory = float(lines[1].strip()) / 1024
            fields = lines[2].split()
            hardware = Hardware(cores=cores, memory=memory, storage={fields[5]: float(fields[3])})
        except (IndexError, ValueError):
            _log.warning("ssh_probe_failed", deployment=self.deployment_name, node=node.hostname)
        return AvailableLocation(
            name=node.hostname,
            deployment=self.deployment_name,
            hostname=node.hostname,
            local=False,
            slots=max(1, int(hardware.cores)) if hardware else None,
            hardware=hardware,
        )

    async def get_available_locations(self, service: str | None = None) -> dict[str, AvailableLocation]:
        """Return one location per node, with the hardware probed at deploy (``nproc``,
        ``/proc/meminfo``, ``df -Pm /tmp``); probes now if not deployed yet.

        Raises:
            DeploymentError: if a node cannot be reached for the probe.
        """
        if self._locations is None:
            await self.deploy(external=True)
        assert self._locations is not None
        return dict(self._locations)

    def _pool(self, location: ExecutionLocation, error: type[ConnectorError]) -> NodePool:
        pool = self._pools.get(location.name)
        if pool is None:
            raise error(
                f"{location} is not a node of ssh deployment {self.deployment_name!r}",
                location=str(location),
                retryable=False,
            )
        return pool

    @contextlib.asynccontextmanager
    async def _session(
        self, location: ExecutionLocation, error: type[ConnectorError]
    ) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """A connection to ``location`` with a session slot; failures become ``error``."""
        import asyncssh

        pool = self._pool(location, error)
        try:
            async with pool.session() as connection:
                yield connection
        except ConnectorError as exc:  # before OSError: CommandTimeoutError is a TimeoutError
            if isinstance(exc, error):
                raise
            raise error(str(exc), location=str(location), retryable=exc.retryable) from exc
        except (asyncssh.Error, OSError) as exc:
            raise error(f"ssh failure on {location}: {exc}", location=str(location)) from exc

    async def _kill_group(self, running: _Running) -> None:
        """Kill the process group of a running command, then close its channel.

        The kill goes over a new channel of the command's own connection, outside the pool's
        session count (so that a full pool cannot delay it). If the server refuses one more
        channel (its ``MaxSessions`` reached: OpenSSH keeps a session until its command exits,
        even when the client closed the channel) or the connection was lost, a dedicated
        connection is opened for the kill. Shielded: a cancelled caller still kills.
        """
        import asyncssh

        from streamflow.connectors._ssh_shell import kill_group_command_line

        line = kill_group_command_line(running.pgid)

        async def kill() -> None:
            with contextlib.suppress(ConnectorError, asyncssh.Error, OSError, TimeoutError):
                async with asyncio.timeout(30):
                    if not running.connection.is_closed():
                        with contextlib.suppress(asyncssh.ChannelOpenError):
                            await running.connection.run(line, check=False)
                            return
                    async with await running.pool.connect() as connection:
                        await connection.run(line, check=False)

        await asyncio.shield(asyncio.ensure_future(kill()))

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
        """Run ``command`` on the node ``location`` (see :meth:`Connector.run`); never ``None``.

        ``workdir`` defaults to the login directory; relative redirection paths are resolved
        against it and the parent directories of output files are created. Errors of the
        wrapper itself (a missing ``workdir``) are reported on the captured output with a
        non-zero exit code. On timeout or cancellation the command's process group is killed.
        """
        from streamflow.connectors._ssh_shell import exit_code, job_command_line

        if not command:
            raise RemoteCommandError("empty command", location=str(location), retryable=False)
        line = job_command_line(command, environment, workdir, stdin, stdout, stderr, capture_output)
        pool = self._pool(location, RemoteCommandError)
        key = next(self._keys)
        async with self._session(location, RemoteCommandError) as connection:
            process = await connection.create_process(line, encoding=None)
            running: _Running | None = None
            try:
                process.stdin.write_eof()
                async with asyncio.timeout(timeout):
                    first = await process.stdout.readline()
                    if first.strip().isdigit():
                        running = _Running(pool, connection, process, int(first))
                        self._running[key] = running
                    output, errors = await asyncio.gather(process.stdout.read(), process.stderr.read())
                    await process.wait_closed()
            except TimeoutError as exc:
                await self._abort(process, running)
                raise CommandTimeoutError(
                    f"{command[0]!r} on {location} timed out after {timeout} s", location=str(location)
                ) from exc
            except BaseException:
                await self._abort(process, running)
                raise
            finally:
                self._running.pop(key, None)
        code = exit_code(process)
        if errors:
            _log.debug("ssh_wrapper_stderr", location=str(location), exit_code=code)
        if capture_output:
            text = (output + errors).decode(errors="replace").rstrip()
            return text, code
        return code

    async def _abort(self, process: asyncssh.SSHClientProcess[bytes], running: _Running | None) -> None:
        if running is not None:
            await self._kill_group(running)
        process.close()

    async def _exec(self, connection: asyncssh.SSHClientConnection, argv: list[str], what: str) -> None:
        result = await connection.run(shlex.join(argv), check=False, encoding="utf-8")
        if result.exit_status != 0:
            raise TransferError(f"{what} failed: {str(result.stderr or '').strip()}")

    # --- copies ---------------------------------------------------------------------------------

    async def _install_remote(
        self, connection: asyncssh.SSHClientConnection, sftp: asyncssh.SFTPClient, tmp: str, dst: str
    ) -> None:
        """Move ``tmp`` to ``dst`` atomically, replacing (never following) what is at ``dst``."""
        import asyncssh

        try:
            old = await sftp.lstat(dst)
        except asyncssh.SFTPNoSuchFile:
            old = None
        new = await sftp.lstat(tmp)
        if old is not None and (stat.S_ISDIR(old.permissions or 0) or stat.S_ISDIR(new.permissions or 0)):
            aside = _beside(dst, "old")
            await sftp.posix_rename(dst, aside)
            await sftp.posix_rename(tmp, dst)
            await self._exec(connection, ["rm", "-rf", "--", aside], f"removing {aside}")
        else:
            await sftp.posix_rename(tmp, dst)

    async def _put(self, src: str, dst: str, location: ExecutionLocation) -> None:
        import asyncssh

        async with self._session(location, TransferError) as connection:
            tmp = _beside(dst, "tmp")
            try:
                async with connection.start_sftp_client() as sftp:
                    await sftp.makedirs(posixpath.dirname(dst) or "/", exist_ok=True)
                    await sftp.put(src, tmp, recurse=True, preserve=True, follow_symlinks=True)
                    await self._install_remote(connection, sftp, tmp, dst)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.run(shlex.join(["rm", "-rf", "--", tmp]), check=False))
                if isinstance(exc, (asyncssh.SFTPError, OSError)):
                    raise _transfer_error(f"cannot copy {src} to {location}:{dst}", exc, location) from exc
                raise

    async def copy_local_to_remote(
        self, src: str, dst: str, locations: Sequence[ExecutionLocation], read_only: bool = False
    ) -> None:
        """Copy ``src`` to ``dst`` on each node over SFTP (a temporary name, then a rename)."""
        if not os.path.exists(src):
            raise TransferError(f"cannot copy {src}: no such file", retryable=False)
        await asyncio.gather(*(self._put(src, dst, location) for location in locations))

    async def copy_remote_to_local(
        self, src: str, dst: str, location: ExecutionLocation, read_only: bool = False
    ) -> None:
        """Copy ``src`` on the node to ``dst`` here over SFTP (a temporary name, then a rename)."""
        import asyncssh

        dst = os.path.abspath(dst)
        parent = os.path.dirname(dst)
        tmp = _beside(dst, "tmp")
        async with self._session(location, TransferError) as connection:
            try:
                await asyncio.to_thread(os.makedirs, parent, exist_ok=True)
                async with connection.start_sftp_client() as sftp:
                    await sftp.get(src, tmp, recurse=True, preserve=True, follow_symlinks=True)
                await asyncio.to_thread(_install_local, tmp, dst)
            except BaseException as exc:
                await asyncio.shield(asyncio.to_thread(_remove_local, tmp))
                if isinstance(exc, (asyncssh.SFTPError, OSError)):
                    raise _transfer_error(f"cannot copy {location}:{src} to {dst}", exc, location) from exc
                raise

    async def _copy_on_node(self, src: str, dst: str, location: ExecutionLocation) -> None:
        import asyncssh

        if posixpath.normpath(src) == posixpath.normpath(dst):
            return
        async with self._session(location, TransferError) as connection:
            tmp = _beside(dst, "tmp")
            try:
                await self._exec(connection, ["mkdir", "-p", "--", posixpath.dirname(dst) or "/"], "mkdir")
                await self._exec(connection, ["cp", "-a", "-L", "--", src, tmp], f"cp {src}")
                async with connection.start_sftp_client() as sftp:
                    await self._install_remote(connection, sftp, tmp, dst)
            except BaseException as exc:
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.run(shlex.join(["rm", "-rf", "--", tmp]), check=False))
                if isinstance(exc, (asyncssh.SFTPError, OSError)):
                    raise _transfer_error(f"cannot copy {src} to {dst} on {location}", exc, location) from exc
                raise

    async def copy_remote_to_remote(
        self,
        src: str,
        dst: str,
        locations: Sequence[ExecutionLocation],
        source_location: ExecutionLocation,
        source_connector: Connector | None = None,
        read_only: bool = False,
    ) -> None:
        """Copy ``src`` from ``source_location`` to ``dst`` on each of ``locations``.

        The same node of this connector: ``cp -a -L`` there. A source on this machine
        (``source_location.local``): SFTP upload. Anything else: a tar stream through this
        process (:func:`~streamflow.connectors.base.stream_copy`).
        """
        if not locations:
            return
        source = source_connector or self
        if source is self:
            same = [loc for loc in locations if loc.name == source_location.name]
            others = [loc for loc in locations if loc.name != source_location.name]
            await asyncio.gather(*(self._copy_on_node(src, dst, loc) for loc in same))
            if others:
                await stream_copy(self, source_location, src, self, others, dst, self.transfer_buffer_size)
        elif source_location.local:
            await self.copy_local_to_remote(src, dst, locations, read_only)
        else:
            await stream_copy(source, source_location, src, self, locations, dst, self.transfer_buffer_size)

    # --- streams --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _stream(
        self, command: list[str], location: ExecutionLocation, writable: bool
    ) -> AsyncIterator[StreamWrapper]:
        from streamflow.connectors._ssh_shell import SSHStream, exit_code

        if not command:
            raise TransferError("empty stream command", retryable=False)
        async with self._session(location, TransferError) as connection:
            process = await connection.create_process(shlex.join(command), encoding=None)
            errors = asyncio.ensure_future(process.stderr.read())
            if not writable:
                process.stdin.write_eof()
            stream = SSHStream(process, writable)
            try:
                yield stream
                if writable:
                    await stream.close()
                elif not stream.eof:  # the caller stopped early: nothing more is wanted
                    process.close()
                    return
                await process.wait_closed()
            except BaseException:
                process.close()
                errors.cancel()
                raise
            code = exit_code(process)
            text = (await errors).decode(errors="replace").strip()
            if code != 0:
                raise TransferError(
                    f"{command[0]} exited with {code} on {location}: {text[-2000:]}", location=str(location)
                )

    def get_stream_reader(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream the standard output of ``command`` run on the node ``location``."""
        return self._stream(command, location, writable=False)

    def get_stream_writer(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream into the standard input of ``command`` run on the node ``location``."""
        return self._stream(command, location, writable=True)


@dataclass(frozen=True)
class _Running:
    """A command running through :meth:`SSHConnector.run`: where, and its process group."""

    pool: NodePool
    connection: asyncssh.SSHClientConnection
    process: asyncssh.SSHClientProcess[bytes]
    pgid: int


def _beside(path: str, kind: str) -> str:
    """A fresh hidden name in the directory of ``path``."""
    parent, name = posixpath.split(path.rstrip("/") or "/")
    return posixpath.join(parent or "/", f".sf-{kind}-{uuid.uuid4().hex[:12]}-{name}")


def _transfer_error(message: str, exc: BaseException, location: ExecutionLocation) -> TransferError:
    import asyncssh

    missing = isinstance(exc, (asyncssh.SFTPNoSuchFile, FileNotFoundError))
    reason = exc.reason if isinstance(exc, asyncssh.SFTPError) else str(exc)
    return TransferError(f"{message}: {reason}", location=str(location), retryable=not missing)


def _remove_local(path: str) -> None:
    if os.path.islink(path) or (os.path.lexists(path) and not os.path.isdir(path)):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def _install_local(tmp: str, dst: str) -> None:
    """Move ``tmp`` to ``dst`` atomically, replacing (never following) what is at ``dst``."""
    if os.path.lexists(dst) and ((os.path.isdir(dst) and not os.path.islink(dst)) or os.path.isdir(tmp)):
        aside = _beside(dst, "old")
        os.rename(dst, aside)
        os.rename(tmp, dst)
        _remove_local(aside)
    else:
        os.replace(tmp, dst)
