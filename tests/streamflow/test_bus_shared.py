"""The shared embedded server: joined by every process of a home, stopped by the last one only."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow.bus import (
    _other_clients,
    _pid_alive,
    _presence_verdict,
    _shared_server_info,
    open_bus,
)
from tests.conftest import stop_runner_daemons


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path))
    monkeypatch.delenv("STREAMFLOW_NATS_URL", raising=False)
    yield tmp_path
    stop_runner_daemons(tmp_path)  # no daemon here: this stops the home's server if one is left


def _info(home: Path) -> dict[str, object]:
    data: dict[str, object] = json.loads((home / "nats" / "server.json").read_text())
    return data


async def test_processes_share_one_server_and_the_last_one_stops_it(home: Path) -> None:
    first, pid = _shared_server_info(home)
    again, same_pid = _shared_server_info(home)
    assert same_pid == pid and again.servers == first.servers
    async with open_bus() as one:
        async with open_bus() as two:
            assert one.is_connected and two.is_connected
        # The second client left, the first still uses the server: it stays up.
        assert _pid_alive(pid) and one.is_connected
        assert _other_clients(_info(home))
    # The last one out stops it.
    assert not _pid_alive(pid)
    assert not (home / "nats" / "server.json").exists()


async def test_a_server_that_does_not_answer_the_probe_in_time_is_assumed_in_use(home: Path) -> None:
    # A listener that accepts but never speaks stands for a server too busy to answer.
    deaf = socket.socket()
    deaf.bind(("127.0.0.1", 0))
    deaf.listen(8)
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(deaf.accept()[0]), daemon=True)
    thread.start()
    try:
        assert _other_clients({"port": deaf.getsockname()[1], "token": "t"}) is True
    finally:
        for conn in accepted:
            conn.close()
        deaf.close()
    # Nothing listening at all: nobody to protect.
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert _other_clients({"port": port, "token": "t"}) is False


def test_only_the_no_responders_status_means_nobody_is_here() -> None:
    """"503" inside an inbox name or a port is not the status (it used to stop the server under its clients)."""
    inbox = "_INBOX.sfprobe5a503c1e"
    assert _presence_verdict(f"HMSG {inbox} 1 16 16\r\nNATS/1.0 503\r\n\r\n\r\n".encode()) is False
    assert _presence_verdict(f"MSG {inbox} 1 4\r\nhere\r\n".encode()) is True
    assert _presence_verdict(f'INFO {{"port":45031}}\r\nPONG\r\nMSG {inbox} 1 4\r\nhere\r\n'.encode()) is True
    assert _presence_verdict(f"HMSG {inbox} 1 16 16\r\n".encode()) is None  # not complete yet
    assert _presence_verdict(b"PONG\r\n") is None
