"""The whole CWL v1.2 conformance suite, through ``streamflow-cwl-runner``.

Runs ``../shared/cwl-conformance.sh -j 2 streamflow-cwl-runner`` end to end (the real
runner client, its warm daemon, the bus and the engine, one client process per test, as
cwltest drives any CWL runner) with a private ``STREAMFLOW_HOME``, and asserts that every
test passes, but for the ones that need what the machine may lack: ``networkaccess``
fetches a page from the Internet, so it may fail when this machine cannot reach it.
Skipped when the suite (``../shared/cwl-v1.2``), the script or ``cwltest`` is not available.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import stop_runner_daemons

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHARED = (ROOT / ".." / "shared").resolve()
SUITE = SHARED / "cwl-v1.2"
SCRIPT = SHARED / "cwl-conformance.sh"


def _not_passed(outdir: Path, tag: str = "all") -> list[str]:
    """Ids listed under "failed" or "unsupported" in ``badges/<tag>.md``."""
    badge = outdir / "badges" / f"{tag}.md"
    if not badge.exists():
        return []
    failed: list[str] = []
    section = ""
    for line in badge.read_text(encoding="utf-8").splitlines():
        if line.startswith("## List of "):
            section = line
        elif line.startswith("- [") and ("failed" in section or "unsupported" in section):
            failed.append(line[3:line.index("]")])
    return failed


def _internet_reachable() -> bool:
    try:
        with socket.create_connection(("commonwl.org", 80), timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.timeout(1500)
def test_the_conformance_suite_passes(tmp_path: Path) -> None:
    """Every conformance test passes (the message lists the ones that did not)."""
    if not (SUITE / "conformance_tests.yaml").exists():
        pytest.skip(f"the CWL v1.2 conformance suite is not at {SUITE}")
    if not SCRIPT.exists():
        pytest.skip(f"the conformance harness is not at {SCRIPT}")
    if shutil.which("cwltest") is None:
        pytest.skip("cwltest is not installed (pip install cwltest)")
    if shutil.which("streamflow-cwl-runner") is None:
        pytest.skip("streamflow-cwl-runner is not on PATH (pip install -e .)")
    home = tmp_path / "home"
    home.mkdir()
    outdir = tmp_path / "conformance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_")}
    # A private embedded bus and daemon; no registry is reachable, so DockerRequirement tools
    # run on the host (cwltool --no-container's behaviour) even where Podman is installed.
    env.update(STREAMFLOW_HOME=str(home), STREAMFLOW_RUNNER_IDLE="10", STREAMFLOW_CONTAINER_ENGINE="none")
    try:
        result = subprocess.run(
            ["bash", str(SCRIPT), "-j", "2", "--timeout", "300", "streamflow-cwl-runner", str(SUITE), str(outdir)],
            env=env, capture_output=True, text=True, timeout=1450, check=False)
    finally:
        stop_runner_daemons(home)
    summary = re.search(r"conformance: (\d+) passed, (\d+) failed, (\d+) unsupported of (\d+)", result.stdout)
    assert summary is not None, f"no summary (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    print(result.stdout)  # the summary and per-tag lines, in the test report
    print((outdir / "runner-version.txt").read_text())
    passed, failed, unsupported, total = map(int, summary.groups())
    allowed = set() if _internet_reachable() else {"networkaccess"}
    not_passed = _not_passed(outdir)
    unexpected = sorted(set(not_passed) - allowed)
    assert total >= 378 and passed + len(set(not_passed) & allowed) == total and not unexpected, (
        f"{failed} failed and {unsupported} unsupported of {total} conformance tests: "
        f"{', '.join(unexpected) or '(see ' + str(outdir / 'cwltest.log') + ')'}"
    )
    assert not _not_passed(outdir, "required")
