"""The warm runner daemon behind ``streamflow-cwl-runner`` (see :mod:`streamflow.cli.runner`).

``python -m streamflow.cli.daemon SOCKET`` serves runner command lines on a Unix socket:

- one daemon per socket: it holds ``SOCKET.lock`` (``flock``) for its whole life; a second
  one started at the same time finds the lock taken and exits;
- each connection is one run, handled in a thread with its own event loop (through
  :func:`streamflow.cli.main.cwl_runner_main`, the code path of an in-process run);
  relative paths are resolved against the client's directory, and what the run writes to
  stdout and stderr is streamed back as it is written; a completed run's job directories
  are removed right after its exit code is sent, not before. A thread that finished its
  run waits for the next one instead of ending, so what a thread keeps (the Node.js
  process evaluating its runs' expressions: ~70 ms of CPU to start) serves every run it
  takes;
- the ``__LOCAL__`` jobs of every run go to one private pool of executor workers on the
  daemon's own loop and bus connection: its tasks are queued on a subject of its own
  (``sf.task.<pool>.<run>``, the pool acting as a pseudo-deployment), so the pool runs
  exactly the daemon's runs (with the daemon's ``PATH`` and settings, relaying tool output
  to the right client), no other process takes them, and a run that ends never takes a
  job of another run down with it, as per-run workers would. The routing is not recorded:
  a resumed run queues its jobs for ``__LOCAL__``'s own workers;
- a client that goes away before its run ends (killed, interrupted, timed out) gets its
  run cancelled as Ctrl-C would (``RunCancelled``; resumable);
- SIGTERM (or SIGINT) cancels the runs in progress, as their clients' Ctrl-C would, and
  the daemon leaves; SIGUSR1 writes the stacks of its loop's tasks to its log;
- it keeps one connection to the shared embedded bus, so the server stays up between
  runs, and exits after ``STREAMFLOW_RUNNER_IDLE`` seconds without a run (default 30) or
  after ``STREAMFLOW_RUNNER_MAX_RUNS`` runs (default 2000; the next client starts a fresh
  one): it first stops listening and removes its socket, then lets the runs it accepted
  finish.

Protocol: the client sends one JSON line ``{"argv": [...], "cwd": "..."}``; the daemon
answers ``{"accepted": true}``, then any number of ``{"out": text}`` / ``{"err": text}``
lines (the run's stdout and stderr) and ``{"tool": base64}`` lines (what its tools write
without redirecting it, for the client's stderr), then ``{"exit": code}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import gc
import io
import json
import os
import queue
import secrets
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["serve"]

_local = threading.local()
_BUS_LOST_AFTER = 10.0  # seconds without a bus connection before the pool reconnects anew
_POOL_RESTARTS = 20  # pool reconnections before the daemon gives up and leaves
#: The daemon's own output (its log file, where the client that started it pointed it).
_daemon_log: TextIO = sys.__stderr__ or io.StringIO()


class _Connection:
    """One client: frames are written from the run's thread."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lock = threading.Lock()
        self.gone = False

    def send(self, frame: dict[str, Any]) -> None:
        data = json.dumps(frame).encode() + b"\n"
        with self.lock:
            if self.gone:
                return
            try:
                self.sock.sendall(data)
            except OSError:
                self.gone = True


class _ThreadStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr``: the current run's client, else the daemon's log."""

    def __init__(self, key: str, fallback: TextIO) -> None:
        self.key = key
        self.fallback = fallback

    def write(self, text: str) -> int:
        connection: _Connection | None = getattr(_local, "connection", None)
        if connection is None:
            return self.fallback.write(text)
        if text:
            connection.send({self.key: text})
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "connection", None) is None:
            self.fallback.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.fallback.fileno()


def _peer_uid(sock: socket.socket) -> int | None:
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return None  # not Linux: the socket's private directory is the only guard
    data = sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", data)
    return int(uid)


def _read_request(sock: socket.socket) -> dict[str, Any] | None:
    sock.settimeout(10)
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        data += chunk
        if len(data) > 16 * 1024 * 1024:
            return None
    sock.settimeout(None)
    request = json.loads(data.split(b"\n", 1)[0])
    if not isinstance(request, dict) or not isinstance(request.get("argv"), list) or \
            not isinstance(request.get("cwd"), str):
        return None
    return request


class _Daemon:
    def __init__(self, path: str, lock_fd: int, idle: float, max_runs: int) -> None:
        self.path = path
        self.lock_fd: int | None = lock_fd
        self.idle = idle
        self.max_runs = max_runs
        self.lock = threading.Lock()
        self.active = 0
        self.accepted = 0
        self.last = time.monotonic()
        self.listener: socket.socket | None = None
        self.inode = 0
        self.clients: dict[str, _Connection] = {}  # run id -> the client that submitted it
        self.interrupts: set[Any] = set()  # of the runs in progress
        self.terminating = False
        self.pool = f"__runner_{os.getpid()}_{secrets.token_hex(3)}__"
        self.closing = threading.Event()
        self.idle_threads = 0  # run threads waiting on handoff for their next connection
        self.handoff: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()

    # -- connections (threads) -------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self.listener is not None
        while not self.closing.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.closing.is_set():
                    return
                time.sleep(0.05)
                continue
            with self.lock:
                if self.closing.is_set():
                    sock.close()
                    return
                self.active += 1
                self.accepted += 1
                last = self.accepted >= self.max_runs
            self._dispatch(sock)
            if last:
                return  # the main loop closes the listener: later clients reach a successor

    def _dispatch(self, sock: socket.socket) -> None:
        """Hand the connection to an idle run thread, or to a new one."""
        with self.lock:
            if self.idle_threads:
                self.idle_threads -= 1
                self.handoff.put(sock)
                return
        threading.Thread(target=self._run_thread, args=(sock,), daemon=True, name="runner").start()

    def _run_thread(self, sock: socket.socket) -> None:
        """Serve connections one after the other: as many threads as runs at once, at most."""
        while True:
            self._serve_one(sock)
            with self.lock:
                self.idle_threads += 1
            sock = self.handoff.get()  # a daemon thread: it ends with the process

    def _serve_one(self, sock: socket.socket) -> None:
        try:
            with sock:
                uid = _peer_uid(sock)
                if uid is not None and uid != os.getuid():
                    return
                request = _read_request(sock)
                if request is None:
                    return
                connection = _Connection(sock)
                connection.send({"accepted": True})
                deferred: list[Callable[[], None]] = []
                code = self._run(connection, request, deferred)
                connection.send({"exit": code})
                # What can wait until the client has its answer (the removal of the job
                # directories: ~25 ms of a conformance test on a loaded machine).
                for work in deferred:
                    try:
                        work()
                    except Exception as exc:
                        _note(f"clean-up after a run failed: {exc!r}")
        except Exception as exc:  # one bad client must not take the daemon down
            _note(f"request failed: {exc!r}")
        finally:
            with self.lock:
                self.active -= 1
                self.last = time.monotonic()

    def _run(self, connection: _Connection, request: dict[str, Any], deferred: list[Callable[[], None]]) -> int:
        from streamflow.cli.engine import Interrupt
        from streamflow.cli.main import RunnerContext, cwl_runner_main

        interrupt = Interrupt()
        finished = threading.Event()
        with self.lock:
            self.interrupts.add(interrupt)
            if self.terminating:
                interrupt.fire("the runner daemon was stopped (SIGTERM)")

        def _watch() -> None:
            # The client sends nothing after its request: end of stream means it is gone.
            with contextlib.suppress(OSError):
                connection.sock.recv(1)
            if not finished.is_set():
                connection.gone = True
                interrupt.fire("the runner client went away (killed, interrupted or timed out)")

        threading.Thread(target=_watch, daemon=True, name="runner-watch").start()
        _local.connection = connection
        runs: list[str] = []

        def _on_run(run_id: str) -> None:
            runs.append(run_id)
            self.clients[run_id] = connection

        try:
            return cwl_runner_main([str(a) for a in request["argv"]],
                                   runner=RunnerContext(cwd=request["cwd"], interrupt=interrupt,
                                                        tmpdir=request.get("tmpdir") or None, on_run=_on_run,
                                                        pool=self.pool, defer=deferred.append))
        except SystemExit as exc:  # argparse: usage errors, --help
            return int(exc.code) if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except Exception as exc:
            print(f"streamflow: internal error: {exc!r}", file=sys.stderr)
            return 1
        finally:
            finished.set()
            with self.lock:
                self.interrupts.discard(interrupt)
            _local.connection = None
            for run_id in runs:
                self.clients.pop(run_id, None)

    def tool_output(self, run_id: str) -> Callable[[bytes], None] | None:
        """Where the tools of a run write what they do not redirect: its client's stderr."""
        connection = self.clients.get(run_id)
        if connection is None:
            return None

        def _send(chunk: bytes) -> None:
            connection.send({"tool": base64.b64encode(chunk).decode("ascii")})

        return _send

    # -- life cycle (main thread) ----------------------------------------------------------

    def _terminate(self, reason: str = "the runner daemon was stopped (SIGTERM)") -> None:
        """Cancel the runs in progress (resumable) and leave (SIGTERM, a lost bus)."""
        with self.lock:
            self.terminating = True
            interrupts = list(self.interrupts)
        for interrupt in interrupts:
            interrupt.fire(reason)

    def _should_close(self) -> bool:
        with self.lock:
            if self.terminating or self.accepted >= self.max_runs:
                return True
            return self.active == 0 and time.monotonic() - self.last >= self.idle

    def _close_listener(self) -> None:
        with self.lock:
            self.closing.set()
        assert self.listener is not None
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self.inode:  # not a successor's socket
                os.unlink(self.path)
        with contextlib.suppress(OSError):
            self.listener.close()
        # A successor may start now, while the runs accepted here finish.
        self._release_lock()

    def _release_lock(self) -> None:
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None

    async def main(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
            loop.add_signal_handler(signal.SIGTERM, self._terminate)
            loop.add_signal_handler(signal.SIGINT, self._terminate)
        listening = False
        failures = 0
        while True:
            try:
                outcome = await self._serve_pool(listening)
            except Exception as exc:  # the bus went away while (re)connecting: try again
                outcome = "lost"
                _note(f"pool failed: {exc!r}")
            listening = listening or self.listener is not None
            if outcome == "done":
                return
            failures += 1
            if failures > _POOL_RESTARTS:
                _note("the bus keeps failing; leaving")
                self._terminate("the runner daemon lost its connection to the bus")
                self._close_listener()
                await self._drain_runs()
                return
            _note("reconnecting the pool to the bus")
            await asyncio.sleep(min(2.0, 0.2 * failures))

    async def _serve_pool(self, listening: bool) -> str:
        """Run the worker pool on one bus connection; "done" (leave) or "lost" (reconnect)."""
        from actors.worker import Worker
        from events.log import EventLog
        from streamflow.bus import BusOptions, _shared_server_info, open_bus, streamflow_home
        from streamflow.cli.engine import load_graph
        from streamflow.workflow.graph import WorkflowGraph

        async with open_bus(BusOptions(name="streamflow-runner-daemon")) as nc:
            _watch_connection(nc)
            log_ = EventLog(nc)
            await log_.setup()

            async def _graphs(run_id: str) -> WorkflowGraph:
                return await load_graph(log_, run_id)

            concurrency = int(os.environ.get("STREAMFLOW_RUNNER_JOBS") or max(4, 2 * (os.cpu_count() or 1)))
            # workdir=None: each job runs under the working directory its run recorded. The
            # pool's name (its queue) stays the same over reconnections: the runs' tasks wait there.
            pool = Worker(log_, self.pool, _graphs, workdir=None, concurrency=concurrency,
                          name=f"{socket.gethostname()}/{os.getpid()}/runner", tool_output=self.tool_output,
                          inactive_threshold=3600)
            stop = asyncio.Event()
            workers = asyncio.create_task(pool.run(stop))
            if not listening:
                self._bind()
                _note(f"serving {self.path} (pool {self.pool})")
                threading.Thread(target=self._accept_loop, daemon=True, name="runner-accept").start()
            outcome = "done"
            try:
                lost_since: float | None = None
                checked = 0.0
                while not self._should_close():
                    if workers.done():
                        _note(f"pool stopped: {workers.exception() if not workers.cancelled() else 'cancelled'}")
                        outcome = "lost"
                        break
                    lost_since = None if nc.is_connected else (lost_since or time.monotonic())
                    if lost_since is not None and time.monotonic() - checked > 1.0:
                        # A dead embedded server is restarted on its address and token (see
                        # streamflow.bus): every connection of every run here reconnects, in
                        # time for their leases.
                        checked = time.monotonic()
                        with contextlib.suppress(Exception):
                            await asyncio.to_thread(_shared_server_info, streamflow_home())
                    if nc.is_closed or (lost_since is not None and time.monotonic() - lost_since > _BUS_LOST_AFTER):
                        _note("lost the bus connection")
                        outcome = "lost"
                        break
                    await asyncio.sleep(0.2)
            finally:
                if outcome == "done":
                    _note(f"leaving after {self.accepted} run(s)")
                    self._close_listener()
                    await self._drain_runs()  # the runs already accepted still need the pool
                stop.set()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(workers, 30 if outcome == "done" else 1)
                if outcome == "done":
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(_remove_pool(log_, self.pool), 10)
            return outcome

    async def _drain_runs(self) -> None:
        while self.active:  # noqa: ASYNC110 - polled: the runs live in other threads
            await asyncio.sleep(0.1)

    def _bind(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # a stale socket: whoever made it is gone (we hold the lock)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o077)
        try:
            listener.bind(self.path)
        finally:
            os.umask(old)
        self.inode = os.stat(self.path).st_ino
        listener.listen(128)
        listener.settimeout(0.2)
        self.listener = listener


async def _remove_pool(log_: Any, pool: str) -> None:
    """Delete the pool's consumer and whatever is left on its queue (nothing, normally)."""
    from actors.worker import consumer_name
    from events.log import TASKS_STREAM

    with contextlib.suppress(Exception):
        await log_.js.delete_consumer(TASKS_STREAM, consumer_name(pool))
    with contextlib.suppress(Exception):
        await log_.js.purge_stream(TASKS_STREAM, subject=f"sf.task.{pool}.>")


def _watch_connection(nc: Any) -> None:
    """Write the connection's errors and state changes to the daemon's log."""
    previous_error, previous_disconnected = nc._error_cb, nc._disconnected_cb

    async def _error(exc: Exception) -> None:
        _note(f"bus error: {exc!r}")
        if previous_error is not None:
            await previous_error(exc)

    async def _disconnected() -> None:
        _note("bus disconnected")
        if previous_disconnected is not None:
            await previous_disconnected()

    async def _reconnected() -> None:
        _note("bus reconnected")

    nc._error_cb, nc._disconnected_cb, nc._reconnected_cb = _error, _disconnected, _reconnected


def _note(message: str) -> None:
    """A line in the daemon's log."""
    _daemon_log.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} runner daemon {os.getpid()}: {message}\n")
    _daemon_log.flush()


def _dump_tasks() -> None:
    """SIGUSR1: write the stack of every task of the daemon's loop to its log (debugging)."""
    for task in asyncio.all_tasks():
        _daemon_log.write(f"--- {task.get_name()} {task.get_coro()!r}\n")
        task.print_stack(file=_daemon_log)
    _daemon_log.flush()


def serve(path: str, *, idle: float, max_runs: int) -> int:
    """Serve runner requests on ``path`` until idle; 0 also when another daemon owns it."""
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    for attempt in range(50):
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            # Another daemon serves this socket, or is leaving it (it releases the lock
            # once it stopped listening), or a client is probing the lock briefly.
            if attempt == 49:
                os.close(lock_fd)
                return 0
            time.sleep(0.02)
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())  # who serves the socket (tests, operators)
    sys.stdout = _ThreadStream("out", _daemon_log)
    sys.stderr = _ThreadStream("err", _daemon_log)
    # Warm the imports every run needs before taking the first one, without the collections
    # their allocations would trigger (~10 % of the time the first clients wait).
    gc.disable()
    import streamflow.cli.engine
    import streamflow.cli.main
    import streamflow.cwl.translator  # noqa: F401

    # What start-up allocated (modules, classes: ~50 k tracked objects) lives as long as the
    # daemon: out of the collector's reach, each full collection during a run costs ~0.1 ms
    # instead of ~20-30 ms.
    gc.collect()
    gc.freeze()
    gc.enable()
    daemon = _Daemon(path, lock_fd, idle, max_runs)
    try:
        asyncio.run(daemon.main())
    finally:
        daemon.closing.set()
        daemon._release_lock()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m streamflow.cli.daemon SOCKET")
    sys.exit(serve(sys.argv[1], idle=float(os.environ.get("STREAMFLOW_RUNNER_IDLE", "30")),
                   max_runs=int(os.environ.get("STREAMFLOW_RUNNER_MAX_RUNS", "2000"))))
