"""Shared fixtures: a real nats-server per test session, isolated StreamFlow homes, CLI helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from events.log import EventLog
from streamflow.bus import BusOptions, EmbeddedServer, _maybe_stop_shared, connect

REPO = Path(__file__).resolve().parents[1]

# The suite stands for `--no-container` behaviour: DockerRequirement tools run on the host,
# whether or not a container engine is installed here (CI installs Podman for the connector
# tests, and no registry is reachable to pull the conformance suite's images). Tests of the
# container path choose an engine explicitly (tests/streamflow/cwl/test_container.py).
os.environ.setdefault("STREAMFLOW_CONTAINER_ENGINE", "none")
CWL_SUITE = (REPO.parent / "shared" / "cwl-v1.2").resolve()


def running_server(store: Path) -> Iterator[EmbeddedServer]:
    """A real nats-server with JetStream on loopback, for a fixture to yield from."""
    server = EmbeddedServer(store)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """A real nats-server with JetStream on loopback, shared by the session."""
    yield from running_server(tmp_path_factory.mktemp("nats") / "jetstream")


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


def cli_env(root: Path, server: EmbeddedServer) -> dict[str, str]:
    """Environment for CLI subprocesses: a home and ``$TMPDIR`` under ``root``, ``server`` as the bus."""
    env = dict(os.environ)
    env["STREAMFLOW_HOME"] = str(root / "sfhome")
    env["STREAMFLOW_NATS_URL"] = server.url
    env["STREAMFLOW_NATS_TOKEN"] = server.token
    env["TMPDIR"] = str(root)
    return env


@pytest.fixture
def sf_env(tmp_path: Path, nats_server: EmbeddedServer) -> dict[str, str]:
    """Environment for CLI subprocesses: a private STREAMFLOW_HOME and the session's bus."""
    return cli_env(tmp_path, nats_server)


def run_cli(args: list[str], env: dict[str, str], cwd: Path | None = None, timeout: float = 120,
            entry: str = "streamflow.cli.main:main") -> subprocess.CompletedProcess[str]:
    """Run a StreamFlow console entry point in a subprocess and capture its output."""
    module, func = entry.split(":")
    code = f"import sys; from {module} import {func}; sys.exit({func}(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


def runner_daemon_pids(home: Path, *, locks: list[Path] | None = None) -> list[int]:
    """Pids of the live runner daemons of a StreamFlow home (written in their lock files)."""
    pids = []
    if locks is None:
        locks = sorted((home / "runner").glob("*.lock")) if (home / "runner").exists() else []
    for lock in locks:
        if not lock.exists():
            continue
        text = lock.read_text().strip()
        if text.isdigit():
            try:
                os.kill(int(text), 0)
            except OSError:
                continue
            pids.append(int(text))
    return pids


def stop_runner_daemons(home: Path, *, locks: list[Path] | None = None) -> None:
    """Stop a home's runner daemons (SIGTERM, then SIGKILL) and its embedded nats-server.

    ``locks``: the daemons' lock files, when their sockets are not under the home.
    """
    for pid in runner_daemon_pids(home, locks=locks):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while runner_daemon_pids(home, locks=locks) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in runner_daemon_pids(home, locks=locks):
        os.kill(pid, signal.SIGKILL)
    info_file = home / "nats" / "server.json"
    if info_file.exists():
        _maybe_stop_shared(home, int(json.loads(info_file.read_text())["pid"]))
