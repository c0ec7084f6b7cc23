"""Issue 14 (13): the commands fail early and cleanly, and leave no server behind.

* a client between finding the shared embedded server and connecting to it is counted as
  a client: another process leaving cannot stop the server under it (the race behind
  ``streamflow list`` failing now and then in parallel loops);
* SIGTERM stops a command like Ctrl-C: the embedded server it started is stopped (exit 143);
* a full disk under ``STREAMFLOW_HOME`` is named as such;
* ``--outdir`` that is a file, job values nested too deeply and integers beyond a declared
  ``long`` are refused up front (exit 2), recording nothing;
* ``events --follow RUN`` ends after the run's final event; ``--forever`` keeps following.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nats.js.errors
import pytest

from streamflow.bus import _join_shared_server, _maybe_stop_shared, _pid_alive, connect, open_bus
from streamflow.cli.guards import bus_error_message
from tests.conftest import run_cli, stop_runner_daemons

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'sleep "$0"; echo done']
inputs:
  pause: {type: double, inputBinding: {position: 1}}
  n: {type: long?}
  v: {type: Any?}
outputs:
  out: stdout
stdout: out.txt
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path / "sfhome"))
    monkeypatch.delenv("STREAMFLOW_NATS_URL", raising=False)
    monkeypatch.delenv("STREAMFLOW_NATS_TOKEN", raising=False)
    yield tmp_path / "sfhome"
    stop_runner_daemons(tmp_path / "sfhome")


def _embedded_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_NATS_")}
    env["STREAMFLOW_HOME"] = str(home)
    env["TMPDIR"] = str(home.parent)
    return env


def _server_pid(home: Path) -> int | None:
    info = home / "nats" / "server.json"
    if not info.exists():
        return None
    return int(json.loads(info.read_text())["pid"])


async def test_a_joining_client_keeps_the_server_of_a_leaving_one(home: Path) -> None:
    # This process found the server (and started it) but has not connected yet, as a
    # `streamflow list` just started would be; another client comes and goes meanwhile.
    options, pid, registration = _join_shared_server(home)
    async with open_bus() as other:
        assert other.is_connected
    # The leaving client was the only *connected* one: before the fix it stopped the server.
    assert _pid_alive(pid)
    nc = await connect(options)
    try:
        await nc.flush(timeout=5)
    finally:
        await nc.close()
    _maybe_stop_shared(home, pid, registration)
    assert not _pid_alive(pid)


@pytest.mark.slow
def test_parallel_list_loops_never_fail(home: Path) -> None:
    env = _embedded_env(home)
    failures: list[str] = []

    def loop() -> None:
        for _ in range(8):
            result = run_cli(["list", "--json"], env, timeout=60)
            if result.returncode != 0:
                failures.append(result.stderr)

    threads = [threading.Thread(target=loop) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _server_pid(home) is None  # the last one out stopped it


def test_sigterm_stops_the_embedded_server_the_command_started(home: Path) -> None:
    env = _embedded_env(home)
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "events", "--all", "--follow"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while _server_pid(home) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        pid = _server_pid(home)
        assert pid is not None and _pid_alive(pid)
        time.sleep(1.0)  # connected and following
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _pid_alive(pid), "the embedded server outlived the command that started it"


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        with open(mount / "fill", "wb") as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
                    handle.flush()
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_named(full_disk: Path) -> None:
    home = full_disk / "sfhome"
    env = _embedded_env(home)
    result = run_cli(["list"], env, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"the disk holding {home} is full" in result.stderr, result.stderr
    # An error from a server already running on that disk says it too.
    os.environ["STREAMFLOW_HOME"], saved = str(home), os.environ.get("STREAMFLOW_HOME")
    try:
        text = bus_error_message(nats.js.errors.ServiceUnavailableError(), embedded=True)
    finally:
        if saved is None:
            os.environ.pop("STREAMFLOW_HOME")
        else:
            os.environ["STREAMFLOW_HOME"] = saved
    assert f"the disk holding {home} is full" in text


def _write(root: Path, job: dict[str, object] | str) -> list[str]:
    (root / "tool.cwl").write_text(TOOL)
    (root / "job.json").write_text(job if isinstance(job, str) else json.dumps(job))
    return ["tool.cwl", "job.json"]


def _runs(env: dict[str, str]) -> list[dict[str, object]]:
    result = run_cli(["list", "--json"], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def test_an_outdir_that_is_a_file_is_refused_up_front(tmp_path: Path, sf_env: dict[str, str]) -> None:
    (tmp_path / "taken").write_text("a file")
    args = _write(tmp_path, {"pause": 0})
    before = len(_runs(sf_env))
    result = run_cli(["run", "--outdir", str(tmp_path / "taken"), *args], sf_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "--outdir" in result.stderr and "not a directory" in result.stderr
    assert len(_runs(sf_env)) == before  # nothing recorded: no RUNNING run left behind


def _nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(("job", "expected"), [
    ({"pause": 0, "v": _nested(500)}, "nested too deeply"),
    ({"pause": 0, "v": _nested(300)}, "input 'v': nested more than 200 levels"),
    ({"pause": 0, "n": 2**70}, "input 'n': 1180591620717411303424 does not fit a CWL long"),
])
def test_hostile_job_values_exit_2(tmp_path: Path, sf_env: dict[str, str], job: dict[str, object],
                                   expected: str) -> None:
    args = _write(tmp_path, job)
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), *args], sf_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_big_numbers_where_a_double_is_declared_are_accepted(tmp_path: Path, sf_env: dict[str, str]) -> None:
    args = _write(tmp_path, {"pause": 2**70})
    result = run_cli(["run", "--validate", *args], sf_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_events_follow_ends_with_the_run_unless_forever(tmp_path: Path, sf_env: dict[str, str]) -> None:
    args = _write(tmp_path, {"pause": 1.5})
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    run = subprocess.Popen([sys.executable, "-c", code, "run", "--run-id", "rfollow" + os.urandom(3).hex(),
                            "--outdir", str(tmp_path / "out"), *args], env=sf_env, cwd=tmp_path,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_id = ""
        deadline = time.monotonic() + 60
        while not run_id and time.monotonic() < deadline:
            line = run.stderr.readline() if run.stderr else ""
            if line.startswith("streamflow: run "):
                run_id = line.split()[-1]
        assert run_id
        # Started while the run is going on: it returns by itself once the run ends.
        followed = run_cli(["events", run_id, "--follow", "--json"], sf_env, timeout=60)
        assert followed.returncode == 0, followed.stderr
        types = [json.loads(line)["type"] for line in followed.stdout.splitlines()]
        assert "RunCompleted" in types and types[0] == "RunSubmitted"
        assert run.wait(timeout=60) == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # A finished run: --follow prints everything and ends; --forever keeps following.
    again = run_cli(["events", run_id, "--follow"], sf_env, timeout=30)
    assert again.returncode == 0 and "RunCompleted" in again.stdout
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli(["events", run_id, "--follow", "--forever"], sf_env, timeout=4)
    unknown = run_cli(["events", "rnosuchrun", "--follow"], sf_env, timeout=30)
    assert unknown.returncode == 2 and "no run" in unknown.stderr


def test_events_into_a_pipe_closed_early_end_without_a_traceback(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """``streamflow events RUN | head -1``: the reader leaves; the command stops quietly (141, SIGPIPE's code)."""
    # A big input recorded in several events: what follows the first line cannot all fit in
    # the pipe's buffer before the reader leaves, so the command does write into a closed pipe.
    args = _write(tmp_path, {"pause": 0, "v": "x" * 200_000})
    done = run_cli(["run", "--run-id", "rpipe" + os.urandom(3).hex(), "--outdir", str(tmp_path / "out"), *args],
                   sf_env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(run_cli(["list", "--json"], sf_env).stdout.splitlines()[-1])["run_id"]
    code = "import sys; from streamflow.cli.main import console_main; sys.exit(console_main())"
    events = subprocess.Popen([sys.executable, "-c", code, "events", run_id, "--json"], env=sf_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    assert events.stdout is not None and events.stderr is not None
    assert events.stdout.readline()  # one line, then the reader is gone while more are written
    events.stdout.close()
    stderr = events.stderr.read().decode()
    assert events.wait(timeout=60) == 141
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr
