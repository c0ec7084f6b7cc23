"""The embedded nats-server's Go collector settings (memory of long runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamflow.bus import SERVER_GOGC, EmbeddedServer


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


@pytest.mark.parametrize(("preset", "expected"), [
    ({}, {"GOGC": SERVER_GOGC}),
    ({"GOGC": "200"}, {"GOGC": "200"}),
    ({"GOMEMLIMIT": "1GiB"}, {"GOMEMLIMIT": "1GiB", "GOGC": None}),
])
def test_embedded_server_runs_with_gogc_unless_the_environment_sets_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: dict[str, str], expected: dict[str, str | None]) -> None:
    monkeypatch.delenv("GOGC", raising=False)
    monkeypatch.delenv("GOMEMLIMIT", raising=False)
    for key, value in preset.items():
        monkeypatch.setenv(key, value)
    server = EmbeddedServer(tmp_path / "js")
    server.start()
    try:
        assert server.process is not None
        env = _environ(server.process.pid)
        for key, value in expected.items():
            assert env.get(key) == value
    finally:
        server.stop()
