"""SSH connections to one node, reused by every command and transfer (sessions are channels)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncssh
import structlog

from streamflow.connectors._ssh_config import SSHNode
from streamflow.errors import ConnectorError

__all__ = ["ConnectOptions", "NodePool"]

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ConnectOptions:
    """How to open connections (shared by the nodes of a deployment).

    Attributes:
        max_connections: connections per node.
        max_sessions: sessions (channels) per connection.
        retries: further attempts after a failed connection.
        retry_delay: seconds between attempts.
        connect_timeout: seconds allowed to connect and log in.
        known_hosts: the known_hosts file to check host keys against; ``None`` disables checks.
    """

    max_connections: int = 1
    max_sessions: int = 10
    retries: int = 3
    retry_delay: float = 5.0
    connect_timeout: float = 30.0
    known_hosts: str | None = None


@dataclass
class _Entry:
    connection: asyncssh.SSHClientConnection
    sessions: int = 0


class NodePool:
    """Up to ``max_connections`` connections to ``node``, each carrying ``max_sessions`` sessions.

    :meth:`session` lends a connection with a free session slot, opening a new connection when
    all are busy and the limit allows, and waiting otherwise. Closed connections are dropped and
    replaced on demand. When opening fails (after the retries), the callers waiting for that
    connection fail with the same error.

    Args:
        deployment: the deployment name (for messages).
        node: the node.
        options: connection settings.
        client_keys: the private keys to offer (``None``: asyncssh's defaults, agent and ~/.ssh).
        password: the login password, if any; never logged.
    """

    def __init__(
        self,
        deployment: str,
        node: SSHNode,
        options: ConnectOptions,
        client_keys: list[asyncssh.SSHKey] | None,
        password: str | None,
    ) -> None:
        self.deployment = deployment
        self.node = node
        self.options = options
        self._client_keys = client_keys
        self._password = password
        self._entries: list[_Entry] = []
        self._opening = 0
        self._failures = 0
        self._last_error: ConnectorError | None = None
        self._cond = asyncio.Condition()
        self._closed = False

    @property
    def address(self) -> str:
        """``user@host:port`` of the node (for messages)."""
        user = f"{self.node.username}@" if self.node.username else ""
        return f"{user}{self.node.hostname}:{self.node.port}"

    def _connect_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "port": self.node.port,
            "connect_timeout": self.options.connect_timeout,
            "keepalive_interval": 30,
            "keepalive_count_max": 3,
        }
        if self.node.username:
            kwargs["username"] = self.node.username
        if self._client_keys is not None:
            kwargs["client_keys"] = self._client_keys
        if self._password is not None:
            kwargs["password"] = self._password
        known_hosts = self.options.known_hosts
        if known_hosts is None:
            kwargs["known_hosts"] = None
        elif os.path.exists(known_hosts):
            kwargs["known_hosts"] = known_hosts
        else:  # no file: no key is trusted (asyncssh would otherwise fail on the missing file)
            kwargs["known_hosts"] = asyncssh.import_known_hosts("")
        return kwargs

    async def connect(self) -> asyncssh.SSHClientConnection:
        """Open a new connection, trying ``retries`` more times after a failure.

        Raises:
            ConnectorError: if every attempt failed; not retryable for an untrusted host key or
                a refused login, retryable otherwise (unreachable host, timeout).
        """
        attempts = self.options.retries + 1
        last: BaseException | None = None
        for attempt in range(1, attempts + 1):
            try:
                return await asyncssh.connect(self.node.hostname, **self._connect_kwargs())
            except asyncssh.HostKeyNotVerifiable as exc:
                known = self.options.known_hosts
                raise ConnectorError(
                    f"deployment {self.deployment!r}: the host key of {self.node.hostname} "
                    f"(port {self.node.port}) is not trusted: it is missing from, or differs from the "
                    f"entry in, the known_hosts file {known}"
                    f"{'' if known and os.path.exists(known) else ' (the file does not exist)'}; "
                    f"add it there (e.g. ssh-keyscan -p {self.node.port} {self.node.hostname}), "
                    "choose another file with knownHostsFile, or set checkHostKey: false (insecure)",
                    location=self.node.hostname,
                    retryable=False,
                ) from exc
            except (OSError, TimeoutError, asyncssh.Error, asyncssh.KeyImportError) as exc:
                last = exc
                _log.warning(
                    "ssh_connect_failed",
                    deployment=self.deployment,
                    node=self.address,
                    attempt=attempt,
                    attempts=attempts,
                    error=_describe(exc),
                )
                if attempt < attempts:
                    await asyncio.sleep(self.options.retry_delay)
        assert last is not None
        denied = isinstance(last, asyncssh.PermissionDenied)
        raise ConnectorError(
            f"deployment {self.deployment!r}: cannot connect to {self.address} after {attempts} "
            f"attempt(s): {_describe(last)}"
            + (" (check username, sshKey, sshKeyPassphraseFile and passwordFile)" if denied else ""),
            location=self.node.hostname,
            retryable=not denied,
        ) from last

    async def _acquire(self) -> _Entry:
        async with self._cond:
            failures = self._failures
            while True:
                if self._closed:
                    raise ConnectorError(
                        f"deployment {self.deployment!r} is undeployed", location=self.node.hostname
                    )
                self._entries = [e for e in self._entries if not e.connection.is_closed()]
                free = [e for e in self._entries if e.sessions < self.options.max_sessions]
                if free:
                    entry = min(free, key=lambda e: e.sessions)
                    entry.sessions += 1
                    return entry
                if self._failures != failures and self._last_error is not None and not self._opening:
                    raise self._last_error
                if len(self._entries) + self._opening < self.options.max_connections:
                    self._opening += 1
                    break
                await self._cond.wait()
        try:
            connection = await self.connect()
        except BaseException as exc:
            async with self._cond:
                self._opening -= 1
                if isinstance(exc, ConnectorError):
                    self._failures += 1
                    self._last_error = exc
                self._cond.notify_all()
            raise
        async with self._cond:
            self._opening -= 1
            if self._closed:
                connection.close()
                self._cond.notify_all()
                raise ConnectorError(
                    f"deployment {self.deployment!r} is undeployed", location=self.node.hostname
                )
            entry = _Entry(connection, sessions=1)
            self._entries.append(entry)
            self._cond.notify_all()
            return entry

    async def _release(self, entry: _Entry) -> None:
        async with self._cond:
            entry.sessions -= 1
            self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """Lend a connection with one session slot reserved for the caller.

        Raises:
            ConnectorError: if no connection can be opened, or the pool is closed.
        """
        entry = await self._acquire()
        try:
            yield entry.connection
        finally:
            await asyncio.shield(self._release(entry))

    async def close(self) -> None:
        """Close every connection; later sessions fail. Idempotent."""
        async with self._cond:
            self._closed = True
            entries, self._entries = self._entries, []
            self._cond.notify_all()
        for entry in entries:
            entry.connection.close()
        for entry in entries:
            with contextlib.suppress(Exception):
                await entry.connection.wait_closed()


def _describe(exc: BaseException) -> str:
    """A one-line description of a connection error (never includes secrets)."""
    if isinstance(exc, asyncssh.DisconnectError):
        return f"{type(exc).__name__}: {exc.reason}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
