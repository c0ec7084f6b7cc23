"""Fixtures of the scale tests: a private bus per test, and the environment of CLI subprocesses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow.bus import EmbeddedServer
from tests.conftest import cli_env, running_server


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server of this test alone: agents share the ``workers-__LOCAL__`` consumer, so no stale task leaks in."""
    yield from running_server(tmp_path / "nats" / "jetstream")


@pytest.fixture
def agent_env(tmp_path: Path, private_server: EmbeddedServer) -> dict[str, str]:
    """Environment of agent and run subprocesses: the private bus, a short ack wait, a private home."""
    return dict(cli_env(tmp_path, private_server), STREAMFLOW_ACK_WAIT="2")
