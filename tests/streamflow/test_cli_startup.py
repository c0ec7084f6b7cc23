"""The fixed cost of a ``streamflow`` process: what start-up imports, how the console entry
point leaves, and how the embedded server is waited for when it is stopped.

No timings here (DESIGN §9): these tests check the mechanisms (``bench/PROFILE.md``,
"Fixed cost", has the figures).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from streamflow.bus import _pid_alive, _stop_pid

ROOT = Path(__file__).resolve().parents[2]
ECHO = ROOT / "bench" / "workflows" / "echo.cwl"


def _python(code: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def test_structlog_is_imported_without_rich_and_rich_still_works() -> None:
    result = _python(
        "import sys\n"
        "import streamflow.cli.main\n"
        "import structlog.dev\n"
        "print('rich' in sys.modules, 'greenlet' in sys.modules, structlog.dev.rich is None)\n"
        "from rich.text import Text\n"
        "print(Text('ok').plain)\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "True", "ok"]


def test_building_the_parser_imports_neither_the_engine_nor_the_workers() -> None:
    # Every command line builds every command's parser (agent, host...): `streamflow version`
    # must not pay for the actors and the CWL stack.
    result = _python(
        "import sys\n"
        "from streamflow.cli.main import main\n"
        "assert main(['version']) == 0\n"
        "print(sorted(m for m in ('streamflow.cli.engine', 'actors.worker', 'cwl_utils') if m in sys.modules))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_a_run_without_streamflow_yml_does_not_load_the_plugin_registry() -> None:
    from streamflow.cli.engine import _policy
    from streamflow.plugins import Registry
    from streamflow.scheduling.policy import DataLocalityPolicy

    policy = _policy(None)
    assert type(policy) is DataLocalityPolicy
    # The same class the registry would have given.
    assert Registry.default().get("policy", "data_locality") is DataLocalityPolicy


def _console(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # Buffered output (as in a shell pipeline), so that leaving without a flush would lose it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_") and k != "PYTHONUNBUFFERED"}
    env["STREAMFLOW_HOME"] = str(tmp_path / "home")
    return _python("import sys; from streamflow.cli.main import console_main; sys.exit(console_main())",
                   *argv, env=env)


def test_console_entry_flushes_its_output_and_keeps_exit_codes(tmp_path: Path) -> None:
    job = tmp_path / "job.yml"
    job.write_text("x: hello\n")
    ok = _console(tmp_path, "run", str(ECHO), str(job), "--outdir", str(tmp_path / "out"),
                  "--workdir", str(tmp_path / "work"), "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"out": "hello."}  # printed to a pipe, then os._exit
    # The embedded server was stopped before the process left.
    info = tmp_path / "home" / "nats" / "server.json"
    assert not info.exists()

    failed = _console(tmp_path, "run", str(ECHO), str(tmp_path / "missing.yml"), "--quiet")
    assert failed.returncode == 2
    assert "missing.yml" in failed.stderr

    usage = _console(tmp_path, "run")  # argparse: SystemExit(2), the ordinary way out
    assert usage.returncode == 2
    assert "WORKFLOW" in usage.stderr
    version = _console(tmp_path, "--version")
    assert version.returncode == 0
    assert version.stdout.startswith("StreamFlow ")


def test_console_entry_turns_the_collector_back_on_after_start_up() -> None:
    result = _python(
        "import gc, sys\n"
        "import streamflow.cli.main as m\n"
        "async def _list(args):\n"
        "    print(gc.isenabled(), gc.get_freeze_count() > 0, flush=True)\n"
        "    return 0\n"
        "m._cmd_list = _list\n"
        "sys.argv = ['streamflow', 'list']\n"
        "m.console_main()\n"
        "print('not reached: console_main leaves with os._exit')\n",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "True"]


def test_stop_pid_waits_for_a_process_that_is_not_our_child() -> None:
    # A sleep orphaned by its shell: not our child, so only the pidfd (or polling) sees it go.
    spawned = subprocess.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"], capture_output=True,
                             text=True, check=True, timeout=30)
    pid = int(spawned.stdout.strip())
    try:
        assert _pid_alive(pid)
        _stop_pid(pid)
        assert not _pid_alive(pid) or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    finally:
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_stop_pid_reaps_a_child() -> None:
    child = subprocess.Popen(["sleep", "60"])
    _stop_pid(child.pid)
    assert not _pid_alive(child.pid)  # reaped by _stop_pid, not left a zombie
    child.returncode = -signal.SIGTERM  # already reaped: keep Popen from waiting on it
