"""Shared fixtures: a real nats-server per test session, isolated StreamFlow homes, CLI helpers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from events.log import EventLog
from streamflow.bus import BusOptions, EmbeddedServer, connect

REPO = Path(__file__).resolve().parents[1]
CWL_SUITE = (REPO.parent / "shared" / "cwl-v1.2").resolve()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real nats-server with JetStream on loopback, shared by the session."""
    server = EmbeddedServer(tmp_path_factory.mktemp("nats") / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def bus_options(nats_server: EmbeddedServer) -> BusOptions:
    """Connection options of the session's server."""
    return nats_server.options()


@pytest.fixture
async def event_log(bus_options: BusOptions) -> AsyncIterator[EventLog]:
    """An event log on the session's server, with its streams set up."""
    nc = await connect(bus_options)
    log = EventLog(nc)
    await log.setup()
    try:
        yield log
    finally:
        await nc.close()


@pytest.fixture
def sf_env(tmp_path: Path, nats_server: EmbeddedServer) -> dict[str, str]:
    """Environment for CLI subprocesses: a private STREAMFLOW_HOME and the session's bus."""
    env = dict(os.environ)
    env["STREAMFLOW_HOME"] = str(tmp_path / "sfhome")
    env["STREAMFLOW_NATS_URL"] = nats_server.url
    env["STREAMFLOW_NATS_TOKEN"] = nats_server.token
    env["TMPDIR"] = str(tmp_path)
    return env


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120,
            entry: str = "streamflow.cli.main:main") -> subprocess.CompletedProcess[str]:
    """Run a StreamFlow console entry point in a subprocess and capture its output."""
    module, func = entry.split(":")
    code = f"import sys; from {module} import {func}; sys.exit({func}(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def runner_daemon_pids(home: Path) -> list[int]:
    """Pids of the live runner daemons of a StreamFlow home (written in their lock files)."""
    pids = []
    for lock in sorted((home / "runner").glob("*.lock")) if (home / "runner").exists() else []:
        text = lock.read_text().strip()
        if text.isdigit():
            try:
                os.kill(int(text), 0)
            except OSError:
                continue
            pids.append(int(text))
    return pids


def stop_runner_daemons(home: Path, env: dict[str, str]) -> None:
    """Stop a home's runner daemons (SIGTERM, then SIGKILL) and its embedded nats-server."""
    for pid in runner_daemon_pids(home):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while runner_daemon_pids(home) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in runner_daemon_pids(home):
        os.kill(pid, signal.SIGKILL)
    stop = ("import json; from streamflow.bus import _maybe_stop_shared, streamflow_home; "
            "info = json.loads((streamflow_home() / 'nats' / 'server.json').read_text()); "
            "_maybe_stop_shared(streamflow_home(), int(info['pid']))")
    subprocess.run([sys.executable, "-c", stop], env=env, capture_output=True, check=False, timeout=30)
