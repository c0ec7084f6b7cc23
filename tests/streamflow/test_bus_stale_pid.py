"""A stale ``server.json`` never gets an unrelated process signalled (issue 14, point 3).

The record names a live process that is not this home's server (a pid reused after a crash
or a reboot): a plain program, a program calling itself ``nats-server`` with another
configuration, and one with our exact command line but another start time. Real processes,
real ``streamflow list`` commands on the embedded server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow.bus import _maybe_stop_shared
from tests.conftest import run_cli, stop_runner_daemons


def _refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there any more: connections are refused


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    (home / "nats").mkdir(parents=True, mode=0o700)
    yield home
    stop_runner_daemons(home)


def _env(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_NATS")}
    env["STREAMFLOW_HOME"] = str(home)
    return env


def _victim(argv0: str, *args: str) -> subprocess.Popen[bytes]:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_DFL); time.sleep(120)"
    return subprocess.Popen(["bash", "-c", 'exec -a "$0" "$@"', argv0, sys.executable, "-c", code, *args])


@pytest.mark.parametrize("kind", ["unrelated", "other-config", "same-cmdline-other-start"])
def test_stale_record_never_signals_a_process_that_is_not_our_server(home: Path, kind: str) -> None:
    conf = home / "nats" / "jetstream.conf"
    if kind == "unrelated":
        victim = _victim("sleeper")
    elif kind == "other-config":
        victim = _victim("/usr/bin/nats-server", "-c", "/elsewhere/jetstream.conf")
    else:
        victim = _victim("/usr/bin/nats-server", "-c", str(conf))
    try:
        time.sleep(0.3)  # the exec is done
        record = {"pid": victim.pid, "port": _refused_port(), "url": "nats://127.0.0.1:1", "token": "t",
                  "start_time": 1}
        (home / "nats" / "server.json").write_text(json.dumps(record))
        result = run_cli(["list"], _env(home), timeout=60)
        assert result.returncode == 0, result.stderr
        assert victim.poll() is None, "a process that is not our server was signalled"
        # The same for the last-one-out stop with a stale record.
        (home / "nats" / "server.json").write_text(json.dumps(record))
        _maybe_stop_shared(home, victim.pid)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_our_own_server_is_still_found_and_reused(home: Path) -> None:
    """The record of a live server of ours (command line and start time match) is reused."""
    env = _env(home)
    code = ("import asyncio, json, sys\n"
            "from streamflow.bus import open_bus\n"
            "async def main():\n"
            "    async with open_bus():\n"
            "        print(open(sys.argv[1]).read(), flush=True)\n"
            "        await asyncio.sleep(8)\n"
            "asyncio.run(main())\n")
    holder = subprocess.Popen([sys.executable, "-c", code, str(home / "nats" / "server.json")], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        first = json.loads(holder.stdout.readline())
        assert isinstance(first["start_time"], int)
        result = run_cli(["list"], env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert json.loads((home / "nats" / "server.json").read_text())["pid"] == first["pid"]
    finally:
        holder.kill()
        holder.wait()
