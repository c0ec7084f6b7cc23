"""Fixtures of the UI tests: ``streamflow ui`` as a real subprocess on the session's bus."""

from __future__ import annotations

import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamflow.bus import EmbeddedServer
from tests.conftest import cli_env

_URL = re.compile(r"^streamflow ui: (http://[^/]+)/\?token=(\S+)$")


@dataclass
class UIServer:
    """A running ``streamflow ui``.

    Attributes:
        base_url: ``http://127.0.0.1:PORT``.
        token: the access token.
        env: the environment it runs in (the session's bus, a private home): use it for
            the CLI commands of a test (``run``, ``events``...).
        root: a directory of the fixture (``$TMPDIR`` of those commands).
        proc: the process.
    """

    base_url: str
    token: str
    env: dict[str, str]
    root: Path
    proc: subprocess.Popen[str]

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``."""
        return {"Authorization": f"Bearer {self.token}"}


def start_ui(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``streamflow ui --port 0 ARGS`` and read its one line of stdout.

    Returns:
        The process, the base URL and the token.
    """
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "ui", "--port", "0", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=0.5):
            line = proc.stdout.readline()
            if line:
                match = _URL.match(line.strip())
                assert match, f"unexpected first line of 'streamflow ui': {line!r}"
                return proc, match.group(1), match.group(2)
        if proc.poll() is not None:
            break
    stop_ui(proc)
    err = proc.stderr.read() if proc.stderr else ""
    raise AssertionError(f"'streamflow ui' did not print its URL (exit {proc.returncode}): {err[-2000:]}")


def stop_ui(proc: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 15 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory, nats_server: EmbeddedServer) -> Iterator[UIServer]:
    """``streamflow ui --port 0`` on the session's nats-server, shared by the session."""
    root = tmp_path_factory.mktemp("ui")
    env = cli_env(root, nats_server)
    proc, base_url, token = start_ui(env)
    try:
        yield UIServer(base_url=base_url, token=token, env=env, root=root, proc=proc)
    finally:
        stop_ui(proc)
