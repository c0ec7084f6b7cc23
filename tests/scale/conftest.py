"""Fixtures of the scale tests: a private bus per test, and the environment of CLI subprocesses."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow.bus import EmbeddedServer


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server of this test alone: agents share the ``workers-__LOCAL__`` consumer, so no stale task leaks in."""
    server = EmbeddedServer(tmp_path / "nats" / "jetstream")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def agent_env(tmp_path: Path, private_server: EmbeddedServer) -> dict[str, str]:
    """Environment of agent and run subprocesses: the private bus, a short ack wait, a private home."""
    env = dict(os.environ)
    env["STREAMFLOW_HOME"] = str(tmp_path / "sfhome")
    env["STREAMFLOW_NATS_URL"] = private_server.url
    env["STREAMFLOW_NATS_TOKEN"] = private_server.token
    env["STREAMFLOW_ACK_WAIT"] = "2"
    env["TMPDIR"] = str(tmp_path)
    return env
