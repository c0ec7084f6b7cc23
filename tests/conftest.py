"""Shared fixtures: a real nats-server per test session, isolated StreamFlow homes, CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
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
