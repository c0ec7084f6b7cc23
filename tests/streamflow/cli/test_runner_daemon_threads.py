"""The runner daemon's run threads: reused from one run to the next, clean-up after the answer.

The connection handling of :class:`streamflow.cli.daemon._Daemon` is driven directly over
socket pairs, with the run itself replaced (no bus, no CWL): what is checked is which
thread serves a connection and when the deferred clean-up runs against the exit frame.
One test then goes through a real daemon to check that a completed run's job directories
are still removed.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamflow.cli import daemon
from tests.conftest import run_cli, stop_runner_daemons

Deferred = list[Callable[[], None]]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[daemon._Daemon]:
    instance = daemon._Daemon(str(tmp_path / "d.sock"), lock_fd=-1, idle=60, max_runs=1000)
    instance.lock_fd = None  # no lock held: nothing to release
    yield instance


def _connect(instance: daemon._Daemon) -> socket.socket:
    """A client's end of a new connection, handed to the daemon as its accept loop would."""
    client, server = socket.socketpair()
    with instance.lock:
        instance.active += 1
        instance.accepted += 1
    instance._dispatch(server)
    client.sendall(json.dumps({"argv": ["x.cwl"], "cwd": "/"}).encode() + b"\n")
    return client


def _frames(client: socket.socket) -> list[dict[str, Any]]:
    """Every frame until the exit frame (the connection stays open)."""
    data = b""
    while b'"exit"' not in data:
        chunk = client.recv(65536)
        assert chunk, f"connection closed before the exit frame: {data!r}"
        data += chunk
    return [json.loads(line) for line in data.splitlines()]


def _wait_idle(instance: daemon._Daemon) -> None:
    deadline = time.monotonic() + 10
    while instance.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert instance.active == 0


def test_a_run_thread_serves_the_next_connection(served: daemon._Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    release = threading.Event()

    def _run(connection: Any, request: dict[str, Any], deferred: Deferred) -> int:
        threads.append(threading.get_ident())
        if len(threads) in (3, 4):  # the third and fourth runs overlap
            release.wait(10)
        return len(threads)

    monkeypatch.setattr(served, "_run", _run)
    for expected in (1, 2):
        with _connect(served) as client:
            assert _frames(client) == [{"accepted": True}, {"exit": expected}]
        _wait_idle(served)
    assert threads[0] == threads[1]  # one thread, reused
    # Two runs at once need two threads: the idle one and a new one.
    first, second = _connect(served), _connect(served)
    deadline = time.monotonic() + 10
    while len(threads) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    release.set()
    with first, second:
        _frames(first)
        _frames(second)
    _wait_idle(served)
    assert len(set(threads[2:])) == 2 and threads[0] in threads[2:]
    assert served.idle_threads == 2


def test_deferred_clean_up_runs_after_the_exit_frame(served: daemon._Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release, done = threading.Event(), threading.Event(), threading.Event()

    def _clean_up() -> None:
        started.set()
        release.wait(10)
        done.set()

    def _run(connection: Any, request: dict[str, Any], deferred: Deferred) -> int:
        deferred.append(_clean_up)
        deferred.append(lambda: 1 / 0)  # a failing clean-up is logged, the others still run
        return 0

    monkeypatch.setattr(served, "_run", _run)
    monkeypatch.setattr(daemon, "_note", lambda message: None)
    with _connect(served) as client:
        # The client has its exit code while the clean-up is still running...
        assert _frames(client) == [{"accepted": True}, {"exit": 0}]
        assert started.wait(10) and not done.is_set()
        # ...and the run counts as active until the clean-up is over (a leaving daemon waits).
        assert served.active == 1
        release.set()
    _wait_idle(served)
    assert done.is_set()


def test_a_completed_run_s_job_directories_are_removed(tmp_path: Path) -> None:
    home = tmp_path / "sfhome"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env.update(STREAMFLOW_HOME=str(home), TMPDIR=str(tmp_path), STREAMFLOW_RUNNER_IDLE="20",
               STREAMFLOW_CONTAINER_ENGINE="none")
    (tmp_path / "echo.cwl").write_text(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [sh, -c, 'echo hi > out.txt']\n"
        "inputs: []\noutputs:\n  out: {type: File, outputBinding: {glob: out.txt}}\n")
    try:
        for i, leave in enumerate(([], ["--leave-tmpdir"])):
            result = run_cli(["--quiet", "--outdir", f"out{i}", *leave, "echo.cwl"], env, cwd=tmp_path,
                             entry="streamflow.cli.runner:main")
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["out"]["basename"] == "out.txt"
        jobs = tmp_path / "streamflow-jobs"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            runs = [run for private in jobs.glob("*-*") for run in private.iterdir()]
            if len(runs) == 1:
                break
            time.sleep(0.05)
        # The run left with --leave-tmpdir keeps its directories; the other one's are gone.
        assert len(runs) == 1, runs
    finally:
        stop_runner_daemons(home)
