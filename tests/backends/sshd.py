"""A real OpenSSH ``sshd`` on 127.0.0.1 for tests: start it, stop it, and a session fixture.

``start_sshd(dir)`` generates an ed25519 host key and client key in ``dir``, writes its own
``sshd_config`` there (key-only login, ``StrictModes no``, ``Subsystem sftp internal-sftp``,
``AuthorizedKeysFile`` and ``PidFile`` in ``dir``), starts ``/usr/sbin/sshd -f`` on a free port
and writes a ``known_hosts`` file for the host key, so that clients can check it. With
``hide=[paths]`` the daemon runs in a private mount namespace (``unshare -m --propagation
private``) in which a tmpfs is mounted over each of ``paths``: commands run through this sshd
see those directories empty, so the server behaves as a really remote machine for them.

Only root can run it (sshd switches users and ``unshare -m`` needs ``CAP_SYS_ADMIN``); the
``sshd`` fixture skips with a stated reason when ``/usr/sbin/sshd`` is absent or the tests do
not run as root. Nothing is left running: ``stop_sshd`` stops the daemon by the pid its pid
file recorded.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.backends._process import gone as _gone

__all__ = ["SSHD", "SshdInfo", "sshd", "sshd_skip_reason", "start_sshd", "stop_sshd"]

SSHD = "/usr/sbin/sshd"
"""The OpenSSH server binary the fixture starts."""


@dataclass(frozen=True)
class SshdInfo:
    """A running test sshd.

    Attributes:
        port: the TCP port it listens on, on ``host``.
        client_key: path of the client's private key (ed25519, no passphrase).
        known_hosts_file: a known_hosts file with the host key for ``[127.0.0.1]:port`` and
            ``[localhost]:port``.
        pid: pid of the listening daemon.
        dir: the directory holding its keys, config, pid file and log (``sshd.log``).
        host: the address it listens on (``127.0.0.1``).
        username: the user to log in as (the user running the tests).
        hidden: the local directories hidden from its sessions (empty tmpfs over each).
    """

    port: int
    client_key: str
    known_hosts_file: str
    pid: int
    dir: str
    host: str = "127.0.0.1"
    username: str = field(default_factory=getpass.getuser)
    hidden: tuple[str, ...] = ()

    @property
    def pid_file(self) -> str:
        """The pid file the daemon wrote."""
        return os.path.join(self.dir, "sshd.pid")

    @property
    def log_file(self) -> str:
        """The daemon's log."""
        return os.path.join(self.dir, "sshd.log")

    def connector_config(self, **extra: Any) -> dict[str, Any]:
        """The ``config:`` of an ``ssh`` deployment reaching this daemon (plus ``extra`` keys)."""
        return {
            "nodes": [self.host],
            "port": self.port,
            "username": self.username,
            "sshKey": self.client_key,
            "knownHostsFile": self.known_hosts_file,
            **extra,
        }


def sshd_skip_reason() -> str | None:
    """Why a test sshd cannot be started here, or ``None`` if it can."""
    if not os.path.exists(SSHD):
        return f"{SSHD} is not installed (Debian package openssh-server)"
    if os.geteuid() != 0:
        return "the test sshd must run as root (it switches users and may unshare its mount namespace)"
    if shutil.which("ssh-keygen") is None:
        return "ssh-keygen is not installed"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _keygen(path: Path) -> None:
    if not path.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "streamflow-test", "-f", str(path)],
            check=True,
            stdin=subprocess.DEVNULL,
        )


def _under(path: str, parent: str) -> bool:
    path, parent = os.path.realpath(path), os.path.realpath(parent)
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
        try:
            return sock.recv(4).startswith(b"SSH-")
        except OSError:
            return False


def start_sshd(
    dir: str | os.PathLike[str],
    hide: Sequence[str | os.PathLike[str]] = (),
    setenv: Mapping[str, str] | None = None,
    port: int | None = None,
    timeout: float = 10.0,
) -> SshdInfo:
    """Start an sshd on 127.0.0.1 with its configuration, keys and state in ``dir``.

    Args:
        dir: a directory for its files (created); must not lie under a ``hide`` path.
        hide: local directories to hide from its sessions: the daemon runs in a private mount
            namespace with an empty tmpfs mounted over each (the directories must exist).
        setenv: environment variables set in every session (sshd ``SetEnv``).
        port: the port to listen on; a free one if ``None``.
        timeout: seconds to wait for the daemon to answer.

    Returns:
        What a client needs to reach it.

    Raises:
        ValueError: if ``dir`` lies under a hidden path, or a ``setenv`` name is invalid.
        RuntimeError: if sshd is missing or did not come up (its log is in the message).
    """
    if (reason := sshd_skip_reason()) is not None:
        raise RuntimeError(reason)
    root = Path(dir).resolve()
    hidden = tuple(os.path.realpath(path) for path in hide)
    for path in hidden:
        if _under(str(root), path):
            raise ValueError(f"the sshd directory {root} lies under the hidden path {path}")
        if not os.path.isdir(path):
            raise ValueError(f"cannot hide {path}: not a directory")
    root.mkdir(parents=True, exist_ok=True)
    Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
    _keygen(root / "host_key")
    _keygen(root / "client_key")
    authorized = root / "authorized_keys"
    authorized.write_text((root / "client_key.pub").read_text())
    authorized.chmod(0o600)
    port = port or _free_port()
    lines = [
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {root / 'host_key'}",
        f"PidFile {root / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "MaxSessions 20",
        "MaxStartups 100",
        "Subsystem sftp internal-sftp",
        "LogLevel INFO",
    ]
    for name, value in (setenv or {}).items():
        if not name.isidentifier() or any(c in value for c in '"\n'):
            raise ValueError(f"invalid SetEnv entry {name!r}")
        lines.append(f'SetEnv "{name}={value}"')
    config = root / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    pid_file = root / "sshd.pid"
    pid_file.unlink(missing_ok=True)
    log = root / "sshd.log"
    check = subprocess.run([SSHD, "-t", "-f", str(config)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"invalid sshd_config: {check.stderr.strip()}")
    daemon = [SSHD, "-f", str(config), "-E", str(log)]
    if hidden:
        mounts = " && ".join(f"mount -t tmpfs -o mode=0755 sf-hidden {shlex.quote(p)}" for p in hidden)
        command = [
            "unshare", "-m", "--propagation", "private",
            "sh", "-c", f"{mounts} && exec {shlex.join(daemon)}",
        ]  # fmt: skip
    else:
        command = daemon
    # sshd daemonizes: the command returns once the listener has forked off.
    started = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if started.returncode != 0:
        raise RuntimeError(f"sshd did not start: {started.stderr.strip()} {_tail(log)}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_file.exists() and (text := pid_file.read_text().strip()) and _listening(port):
            pid = int(text)
            known_hosts = root / "known_hosts"
            host_key = (root / "host_key.pub").read_text().split()
            known_hosts.write_text(
                "".join(
                    f"[{name}]:{port} {host_key[0]} {host_key[1]}\n" for name in ("127.0.0.1", "localhost")
                )
            )
            return SshdInfo(
                port=port,
                client_key=str(root / "client_key"),
                known_hosts_file=str(known_hosts),
                pid=pid,
                dir=str(root),
                hidden=hidden,
            )
        time.sleep(0.05)
    if pid_file.exists():
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    raise RuntimeError(f"sshd did not come up on port {port} within {timeout} s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_text()[-2000:]
    except OSError:
        return ""


def stop_sshd(info: SshdInfo, timeout: float = 10.0) -> None:
    """Stop the daemon of ``info`` (SIGTERM, then SIGKILL) and wait until it has exited.

    Only the pid its own pid file recorded is signalled (sessions still open end when their
    clients disconnect). Idempotent.
    """
    pid = info.pid
    try:
        recorded = int(Path(info.pid_file).read_text().strip())
    except (OSError, ValueError):
        recorded = pid
    if recorded != pid or _gone(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + timeout
        time.sleep(0.02)
    with contextlib.suppress(OSError):
        Path(info.pid_file).unlink()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdInfo]:
    """A real sshd on 127.0.0.1 for the session (no hidden paths); skips when unavailable."""
    if (reason := sshd_skip_reason()) is not None:
        pytest.skip(reason)
    info = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield info
    finally:
        stop_sshd(info)
