"""``streamflow-cwl-runner``: a thin client of the warm runner daemon.

A CWL runner is invoked once per workflow by test harnesses and pipelines (cwltest runs
hundreds of them one after the other), and most of a short run's time would go to
starting Python and importing the CWL stack. This module, the console script's entry
point, imports nothing but the standard library: it sends its command line, working
directory and standard streams' text over a Unix socket to the *runner daemon*
(:mod:`streamflow.cli.daemon`), starting one if none listens, and relays what the daemon
streams back (stdout, stderr, exit code). The daemon runs the command line through the
very code path of an in-process run (:func:`streamflow.cli.main.cwl_runner_main`).

The daemon is private to one user, one host, one interpreter, one ``$STREAMFLOW_HOME``,
one ``PATH`` and one version of the code: its socket's name is a digest of all of these
(and of the ``STREAMFLOW_*`` settings), so a client never reaches a daemon that would
run its workflow differently than it would itself. The socket lives in a directory only
the user can enter, and the daemon also checks its peer's uid.

The client runs the command in-process instead when ``STREAMFLOW_RUNNER_DAEMON=0``, when
the bus is not the embedded one (``--nats*`` or ``STREAMFLOW_NATS_URL``), and when the
daemon cannot be started or reached before it accepted the request. Interrupting the
client (Ctrl-C, SIGTERM, a harness's timeout) closes the connection, and the daemon
cancels the run as Ctrl-C would: it stays resumable.
"""

from __future__ import annotations

import _socket
import json
import os
import sys
import time

try:  # the built-in module: hashlib would load OpenSSL first (~3-9 ms of every call)
    from _blake2 import blake2b
except ImportError:  # a Python built without its own hashes
    from hashlib import blake2b

TYPE_CHECKING = False  # typing's costs this thin client ~4 ms per run
if TYPE_CHECKING:
    from typing import Any

# ``_socket`` rather than ``socket``: the wrapper module imports enum, selectors and array
# (~4 ms), for nothing this client uses.

__all__ = ["daemon_socket", "main"]

_SOURCE_PACKAGES = ("streamflow", "actors", "events")
_MAX_SOCKET_PATH = 100  # bytes: sun_path holds 108 with its terminating NUL
_START_TIMEOUT = 60.0  # seconds a client waits for a daemon it started to listen
_MAX_LOG = 8 * 1024 * 1024  # bytes of a daemon log before a new daemon starts it afresh


def _home() -> str:
    return os.environ.get("STREAMFLOW_HOME") or os.path.join(os.path.expanduser("~"), ".streamflow")


def _fingerprint() -> str:
    """A digest of everything that makes two runner processes behave the same."""
    digest = blake2b(digest_size=8)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for package in _SOURCE_PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = os.path.join(dirpath, name)
                    st = os.stat(path)
                    digest.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\0".encode())
    settings = sorted((k, v) for k, v in os.environ.items()
                      if k.startswith("STREAMFLOW_") and not k.startswith("STREAMFLOW_RUNNER_"))
    # The host name too: a home on a shared filesystem must not lead a client to a socket
    # (or a lock) of a daemon running on another machine.
    digest.update(json.dumps([sys.executable, sys.version, os.path.abspath(_home()), os.environ.get("PATH", ""),
                              os.getuid(), os.uname().nodename, settings]).encode())
    return digest.hexdigest()


def _private_dir(path: str) -> str:
    """Create ``path`` (mode 0700) and check that it is the user's own and private."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path):
        raise PermissionError(f"{path}: not a private directory of this user")
    return path


def daemon_socket() -> str:
    """The socket path of the daemon matching this process."""
    name = f"{_fingerprint()}.sock"
    os.makedirs(_home(), mode=0o700, exist_ok=True)
    base = _private_dir(os.path.join(_home(), "runner"))
    path = os.path.join(base, name)
    if len(path.encode()) > _MAX_SOCKET_PATH:
        # A short, fixed place ($TMPDIR may be long too); the digest keeps homes apart.
        base = _private_dir(f"/tmp/streamflow-runner-{os.getuid()}")
        path = os.path.join(base, name)
        if len(path.encode()) > _MAX_SOCKET_PATH:
            raise OSError(f"no socket path short enough for the runner daemon ({path})")
    return path


def _in_process(argv: list[str]) -> int:
    from streamflow.cli.main import cwl_runner_main

    return cwl_runner_main(argv)


def _forward_wanted(argv: list[str]) -> bool:
    if os.environ.get("STREAMFLOW_RUNNER_DAEMON", "1") == "0" or os.environ.get("STREAMFLOW_NATS_URL"):
        return False
    return not any(a.startswith("--nats") for a in argv)


def _connect(path: str) -> _socket.socket | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        return None
    return sock


def _spawn(path: str) -> Any:
    import subprocess

    log_path = path[: -len(".sock")] + ".log"
    # Appended to (a daemon that failed is not wiped out by its successor), within bounds.
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    if os.path.exists(log_path) and os.path.getsize(log_path) > _MAX_LOG:
        flags |= os.O_TRUNC
    fd = os.open(log_path, flags, 0o600)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "streamflow.cli.daemon", path],
            stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, start_new_session=True, close_fds=True,
            cwd=os.path.dirname(path),  # not the first client's directory, which may go away
        )
    finally:
        os.close(fd)


def _wait_for(path: str, process: Any) -> _socket.socket | None:
    """Connect once the daemon listens; None when it died without anyone listening."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        sock = _connect(path)
        if sock is not None:
            return sock
        if process.poll() is not None and not _daemon_alive(path):
            return None
        time.sleep(0.01)
    return None


def _daemon_alive(path: str) -> bool:
    """Whether some daemon holds this socket's lock (it may be starting)."""
    import fcntl

    try:
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


class _Frames:
    """Newline-delimited JSON frames read from the daemon."""

    def __init__(self, sock: _socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.scanned = 0  # bytes of the buffer known to hold no newline

    def next(self) -> dict[str, Any] | None:
        while (end := self.buffer.find(b"\n", self.scanned)) < 0:
            self.scanned = len(self.buffer)
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                return None
            self.buffer += chunk
        frame: dict[str, Any] = json.loads(self.buffer[:end])
        del self.buffer[: end + 1]
        self.scanned = 0
        return frame


def _forward(argv: list[str]) -> int | None:
    """Run ``argv`` in the daemon; None when it did not accept the request."""
    path = daemon_socket()
    request = json.dumps({"argv": argv, "cwd": os.getcwd(), "tmpdir": os.environ.get("TMPDIR"),
                          "pid": os.getpid()}).encode() + b"\n"
    spawned = False
    for _ in range(5):
        sock = _connect(path)
        if sock is None:
            if spawned and not _daemon_alive(path):
                return None
            sock = _wait_for(path, _spawn(path))
            spawned = True
            if sock is None:
                print(f"streamflow: the runner daemon did not start (see {path[: -len('.sock')]}.log); "
                      "running in-process", file=sys.stderr)
                return None
        try:
            try:
                sock.sendall(request)
                frames = _Frames(sock)
                first = frames.next()
            except OSError:
                first = None
            if first is None or not first.get("accepted"):
                continue  # the daemon was leaving: start or reach the next one
            while True:
                try:
                    frame = frames.next()
                except OSError:
                    frame = None
                if frame is None:
                    sys.stdout.flush()
                    print("streamflow: the runner daemon stopped before the run ended; see "
                          f"{path[: -len('.sock')]}.log (set STREAMFLOW_RUNNER_DAEMON=0 to run in-process)",
                          file=sys.stderr)
                    return 1
                if "out" in frame:
                    sys.stdout.write(frame["out"])
                elif "err" in frame:
                    sys.stderr.write(frame["err"])
                    sys.stderr.flush()
                elif "tool" in frame:
                    import base64

                    sys.stderr.flush()
                    sys.stderr.buffer.write(base64.b64decode(frame["tool"]))
                    sys.stderr.buffer.flush()
                elif "exit" in frame:
                    sys.stdout.flush()
                    return int(frame["exit"])
        finally:
            sock.close()
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``streamflow-cwl-runner``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        from streamflow import __version__

        print(f"streamflow-cwl-runner {__version__}")
        return 0
    if not _forward_wanted(args):
        return _in_process(args)
    try:
        code = _forward(args)
    except KeyboardInterrupt:
        print("streamflow: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # e.g. no private directory for the socket
        print(f"streamflow: runner daemon unavailable ({exc}); running in-process", file=sys.stderr)
        code = None
    if code is None:
        return _in_process(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
