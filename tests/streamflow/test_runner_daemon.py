"""``streamflow-cwl-runner`` through the warm runner daemon (real processes, real embedded bus).

Each test has a private ``STREAMFLOW_HOME`` and no ``STREAMFLOW_NATS_URL``, so the client
forwards to a daemon of its own (which starts the home's embedded nats-server); the
fixture stops whatever daemon the test started.
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli, runner_daemon_pids, stop_runner_daemons

pytestmark = pytest.mark.slow

CLIENT = "streamflow.cli.runner:main"

ECHO = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo "$0" > out.txt; echo tool-says-hello >&2']
arguments: [$(inputs.message)]
inputs:
  message: string
outputs:
  out:
    type: File
    outputBinding: {glob: out.txt}
"""

SLEEPER = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo $$ > "$0"; exec sleep 60']
arguments: [$(inputs.pidfile)]
inputs:
  pidfile: string
outputs: []
"""


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.write_text(textwrap.dedent(text))
    return path


def _job(root: Path, name: str, **inputs: str) -> str:
    (root / name).write_text(json.dumps(inputs))
    return name


@pytest.fixture
def embedded_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A private home on its own embedded bus; the daemons started are stopped afterwards."""
    home = tmp_path / "sfhome"
    home.mkdir(mode=0o755)  # a home others may read: the daemon's own directory is what must be private
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    env.update(STREAMFLOW_HOME=str(home), TMPDIR=str(tmp_path), STREAMFLOW_RUNNER_IDLE="20",
               STREAMFLOW_CONTAINER_ENGINE="none")
    yield env
    stop_runner_daemons(home)


def _start_client(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    """``streamflow-cwl-runner ARGS`` in the background (text pipes)."""
    module, func = CLIENT.split(":")
    code = f"import sys; from {module} import {func}; sys.exit({func}(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _normalized(text: str) -> str:
    """Messages for people (structured log lines aside), but for run ids and times."""
    text = "\n".join(line for line in text.splitlines() if not line.startswith("{"))
    text = re.sub(r"\br[0-9a-f]{12}\b", "RUN", text)
    return re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", "TIME", text)


def _runs(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    result = run_cli(["list", "--json"], env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _run_events(env: dict[str, str], cwd: Path, run_id: str) -> list[dict[str, Any]]:
    result = run_cli(["events", run_id, "--json"], env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _started_pid(env: dict[str, str], cwd: Path, run_id: str) -> int:
    started = [e for e in _run_events(env, cwd, run_id) if e["type"] == "RunStarted"]
    return int(started[0]["pid"])


def test_forwarded_run_resolves_paths_against_the_client_directory(tmp_path: Path,
                                                                    embedded_env: dict[str, str]) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _write(work, "echo.cwl", ECHO)
    _write(work, "job.yml", "message: hello daemon\n")
    result = run_cli(["--outdir", "results", "echo.cwl", "job.yml"], embedded_env, cwd=work, entry=CLIENT)
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)
    assert outputs["out"]["path"] == str(work / "results" / "out.txt")
    assert (work / "results" / "out.txt").read_text() == "hello daemon\n"
    # What the tool writes without redirecting it reaches this client's stderr.
    assert "tool-says-hello" in result.stderr
    # The run was hosted by a daemon, not by the client process, and its jobs ran under
    # this client's $TMPDIR.
    runs = _runs(embedded_env, work)
    assert len(runs) == 1 and runs[0]["status"] == "COMPLETED"
    events = _run_events(embedded_env, work, runs[0]["run_id"])
    started = next(e for e in events if e["type"] == "JobStarted")
    assert started["workdir"].startswith(str(tmp_path / "streamflow-jobs"))
    assert started["worker"].endswith("/runner")
    assert _started_pid(embedded_env, work, runs[0]["run_id"]) in runner_daemon_pids(Path(embedded_env["STREAMFLOW_HOME"]))


def test_one_daemon_serves_concurrent_clients_and_later_runs(tmp_path: Path, embedded_env: dict[str, str]) -> None:
    _write(tmp_path, "echo.cwl", ECHO)
    clients = [_start_client(["--outdir", f"out{i}", "--quiet", "echo.cwl", _job(tmp_path, f"job{i}.json", message=f"m{i}")],
                             embedded_env, tmp_path) for i in range(4)]
    for i, client in enumerate(clients):
        out, err = client.communicate(timeout=120)
        assert client.returncode == 0, err
        assert json.loads(out)["out"]["basename"] == "out.txt"
        assert (tmp_path / f"out{i}" / "out.txt").read_text() == f"m{i}\n"
    later = run_cli(["--outdir", "out4", "--quiet", "echo.cwl", _job(tmp_path, "job4.json", message="m4")],
                    embedded_env, cwd=tmp_path, entry=CLIENT)
    assert later.returncode == 0, later.stderr
    runs = _runs(embedded_env, tmp_path)
    assert len(runs) == 5
    pids = {_started_pid(embedded_env, tmp_path, run["run_id"]) for run in runs}
    assert len(pids) == 1, f"runs hosted by several processes: {pids}"
    assert pids == set(runner_daemon_pids(Path(embedded_env["STREAMFLOW_HOME"])))


def test_exit_codes_and_messages_match_an_in_process_run(tmp_path: Path, embedded_env: dict[str, str]) -> None:
    _write(tmp_path, "echo.cwl", ECHO)
    _write(tmp_path, "fail.cwl", "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [sh, -c, 'exit 3']\n"
                                 "inputs: []\noutputs: []\n")
    _write(tmp_path, "operation.cwl", "cwlVersion: v1.2\nclass: Operation\ninputs: []\noutputs: []\n")
    cases = {
        "wrong input type": ["echo.cwl", _job(tmp_path, "bad.json", message=["not", "a", "string"])],  # type: ignore[arg-type]
        "missing input": ["echo.cwl"],
        "failed tool": ["fail.cwl"],
        "no such file": ["nowhere.cwl"],
        "unsupported": ["operation.cwl"],
        "bad option": ["--no-such-option", "echo.cwl"],
    }
    inproc_env = dict(embedded_env, STREAMFLOW_RUNNER_DAEMON="0")
    for name, args in cases.items():
        daemon = run_cli(["--quiet", *args], embedded_env, cwd=tmp_path, entry=CLIENT)
        here = run_cli(["--quiet", *args], inproc_env, cwd=tmp_path, entry=CLIENT)
        assert daemon.returncode == here.returncode, f"{name}: {daemon.returncode} != {here.returncode}"
        assert daemon.returncode != 0, name
        assert daemon.stdout == here.stdout, name
        # The same messages, but for run ids and times.
        assert _normalized(daemon.stderr) == _normalized(here.stderr), name
    assert run_cli(["--quiet", "operation.cwl"], embedded_env, cwd=tmp_path, entry=CLIENT).returncode == 33


def test_killed_client_cancels_its_run_and_the_tool_then_resume_finishes_it(
        tmp_path: Path, embedded_env: dict[str, str]) -> None:
    _write(tmp_path, "sleeper.cwl", SLEEPER)
    pidfile = tmp_path / "tool.pid"
    client = _start_client(["--quiet", "sleeper.cwl", _job(tmp_path, "job.json", pidfile=str(pidfile))],
                           embedded_env, tmp_path)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    tool_pid = int(pidfile.read_text())
    client.send_signal(signal.SIGTERM)
    client.communicate(timeout=30)
    # The daemon notices the client is gone, records the cancellation, and its pool kills
    # the attempt once it sees the run is over (heartbeat period: ack_wait / 3).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(tool_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the tool of the cancelled run is still running")
    runs = _runs(embedded_env, tmp_path)
    assert [r["status"] for r in runs] == ["CANCELLED"]
    cancelled = [e for e in _run_events(embedded_env, tmp_path, runs[0]["run_id"]) if e["type"] == "RunCancelled"]
    assert "client went away" in cancelled[0]["reason"]
    # The routing to the daemon's pool was not recorded: a resume runs the job on its own
    # workers (the tool is made quick for the resume).
    _write(tmp_path, "sleeper.cwl", SLEEPER.replace("exec sleep 60", "exit 0"))
    resumed = run_cli(["resume", runs[0]["run_id"]], embedded_env, cwd=tmp_path, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["status"] for r in _runs(embedded_env, tmp_path)] == ["COMPLETED"]


def test_without_the_daemon_the_client_runs_in_process(tmp_path: Path, embedded_env: dict[str, str]) -> None:
    _write(tmp_path, "echo.cwl", ECHO)
    env = dict(embedded_env, STREAMFLOW_RUNNER_DAEMON="0")
    client = _start_client(["--quiet", "echo.cwl", _job(tmp_path, "j.json", message="x")], env, tmp_path)
    _out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    runs = _runs(env, tmp_path)
    assert _started_pid(env, tmp_path, runs[0]["run_id"]) == client.pid
    assert runner_daemon_pids(Path(env["STREAMFLOW_HOME"])) == []


def test_daemon_leaves_when_idle_and_a_new_one_takes_over_after_max_runs(tmp_path: Path,
                                                                          embedded_env: dict[str, str]) -> None:
    _write(tmp_path, "echo.cwl", ECHO)
    home = Path(embedded_env["STREAMFLOW_HOME"])
    env = dict(embedded_env, STREAMFLOW_RUNNER_MAX_RUNS="2", STREAMFLOW_RUNNER_IDLE="2")
    for i in range(3):
        result = run_cli(["--quiet", "--outdir", f"o{i}", "echo.cwl", _job(tmp_path, f"j{i}.json", message=str(i))],
                         env, cwd=tmp_path, entry=CLIENT)
        assert result.returncode == 0, result.stderr
    runs = _runs(env, tmp_path)
    pids = [_started_pid(env, tmp_path, r["run_id"]) for r in sorted(runs, key=lambda r: r["submitted_at"])]
    assert pids[0] == pids[1] != pids[2]
    # Idle: the daemon removes its socket and leaves; nothing listens any more.
    deadline = time.monotonic() + 30
    while runner_daemon_pids(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runner_daemon_pids(home) == []
    assert list((home / "runner").glob("*.sock")) == []


def test_daemon_socket_is_private_and_depends_on_path_and_settings(tmp_path: Path,
                                                                   embedded_env: dict[str, str]) -> None:
    probe = "from streamflow.cli.runner import daemon_socket; print(daemon_socket())"

    def _socket(env: dict[str, str]) -> str:
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
        return result.stdout.strip()

    base = _socket(embedded_env)
    assert _socket(embedded_env) == base
    assert _socket(dict(embedded_env, PATH="/usr/bin:/bin")) != base
    assert _socket(dict(embedded_env, STREAMFLOW_ACK_WAIT="5")) != base
    assert _socket(dict(embedded_env, STREAMFLOW_RUNNER_IDLE="5")) == base  # the daemon's own knobs
    directory = Path(base).parent
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    _write(tmp_path, "echo.cwl", ECHO)
    result = run_cli(["--quiet", "echo.cwl", _job(tmp_path, "j.json", message="x")], embedded_env, cwd=tmp_path,
                     entry=CLIENT)
    assert result.returncode == 0, result.stderr
    assert stat.S_ISSOCK(Path(base).stat().st_mode)


def test_a_home_too_deep_for_a_socket_path_still_gets_a_daemon(tmp_path: Path,
                                                                embedded_env: dict[str, str]) -> None:
    home = tmp_path / ("deep-" * 12) / "sfhome"
    env = dict(embedded_env, STREAMFLOW_HOME=str(home))
    _write(tmp_path, "echo.cwl", ECHO)
    probe = "from streamflow.cli.runner import daemon_socket; print(daemon_socket())"
    path = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    lock = Path(path + ".lock")
    try:
        result = run_cli(["--quiet", "echo.cwl", _job(tmp_path, "j.json", message="x")], env, cwd=tmp_path,
                         entry=CLIENT)
        assert result.returncode == 0, result.stderr
        assert path.startswith(f"/tmp/streamflow-runner-{os.getuid()}/") and stat.S_ISSOCK(Path(path).stat().st_mode)
        runs = _runs(env, tmp_path)
        assert int(lock.read_text().strip()) == _started_pid(env, tmp_path, runs[0]["run_id"])
    finally:
        stop_runner_daemons(home, locks=[lock])


def test_a_killed_embedded_server_comes_back_and_the_run_completes(tmp_path: Path,
                                                                   embedded_env: dict[str, str]) -> None:
    """SIGKILL of the bus mid-job: the daemon restarts it on the same address, everyone reconnects."""
    _write(tmp_path, "sleeper.cwl", SLEEPER.replace("exec sleep 60", "sleep 4; echo done > out.txt").replace(
        "outputs: []", "outputs:\n  out:\n    type: File\n    outputBinding: {glob: out.txt}"))
    pidfile = tmp_path / "tool.pid"
    client = _start_client(["--quiet", "--outdir", "out", "sleeper.cwl", _job(tmp_path, "job.json", pidfile=str(pidfile))],
                           embedded_env, tmp_path)
    deadline = time.monotonic() + 60
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    info_file = Path(embedded_env["STREAMFLOW_HOME"]) / "nats" / "server.json"
    before = json.loads(info_file.read_text())
    os.kill(int(before["pid"]), signal.SIGKILL)
    out, err = client.communicate(timeout=120)
    assert client.returncode == 0, err
    assert json.loads(out)["out"]["basename"] == "out.txt"
    after = json.loads(info_file.read_text())
    assert after["pid"] != before["pid"] and after["port"] == before["port"]
    runs = _runs(embedded_env, tmp_path)
    assert [r["status"] for r in runs] == ["COMPLETED"]
    ids = [e["event_id"] for e in _run_events(embedded_env, tmp_path, runs[0]["run_id"])]
    assert len(ids) == len(set(ids))


def test_version_answers_at_once_and_validate_goes_through_the_daemon(tmp_path: Path,
                                                                      embedded_env: dict[str, str]) -> None:
    home = Path(embedded_env["STREAMFLOW_HOME"])
    version = run_cli(["--version"], embedded_env, cwd=tmp_path, entry=CLIENT)
    assert version.returncode == 0 and re.fullmatch(r"streamflow-cwl-runner \S+\n", version.stdout)
    assert runner_daemon_pids(home) == []  # no daemon, no bus just to print a version
    _write(tmp_path, "echo.cwl", ECHO)
    valid = run_cli(["--validate", "echo.cwl", _job(tmp_path, "j.json", message="x")], embedded_env, cwd=tmp_path,
                    entry=CLIENT)
    assert valid.returncode == 0, valid.stderr
    assert json.loads(valid.stdout)["valid"] is True
    _write(tmp_path, "broken.cwl", "cwlVersion: v1.2\nclass: CommandLineTool\ninputs: [unclosed\n")
    broken = run_cli(["--validate", "broken.cwl"], embedded_env, cwd=tmp_path, entry=CLIENT)
    assert broken.returncode == 2 and "broken.cwl" in broken.stderr
    assert _runs(embedded_env, tmp_path) == []  # validating records nothing
