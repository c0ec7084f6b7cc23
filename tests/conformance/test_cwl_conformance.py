"""The ``required`` tests of the CWL v1.2 conformance suite, through ``streamflow-cwl-runner``.

Runs ``../shared/cwl-conformance.sh -t required -j 2 streamflow-cwl-runner`` end to end (the
real runner, bus and engine, one process per test, as cwltest drives any CWL runner) with a
private ``STREAMFLOW_HOME``, and asserts that every required test passes. Skipped when the
suite (``../shared/cwl-v1.2``), the script or ``cwltest`` is not available.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.conformance, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SHARED = (ROOT / ".." / "shared").resolve()
SUITE = SHARED / "cwl-v1.2"
SCRIPT = SHARED / "cwl-conformance.sh"


def _failed_tests(outdir: Path) -> list[str]:
    """Ids listed under "failed" (and "unsupported": a required test may not be) in badges/required.md."""
    badge = outdir / "badges" / "required.md"
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


@pytest.mark.timeout(1500)
def test_every_required_conformance_test_passes(tmp_path: Path) -> None:
    """Every test tagged ``required`` passes (the message lists the ones that did not)."""
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
    env = dict(os.environ, STREAMFLOW_HOME=str(home))
    env.pop("STREAMFLOW_NATS_URL", None)  # a private embedded server, not a shared one
    result = subprocess.run(
        ["bash", str(SCRIPT), "-t", "required", "-j", "2", "--timeout", "300",
         "streamflow-cwl-runner", str(SUITE), str(outdir)],
        env=env, capture_output=True, text=True, timeout=1800, check=False)
    summary = re.search(r"conformance: (\d+) passed, (\d+) failed, (\d+) unsupported of (\d+)", result.stdout)
    assert summary is not None, f"no summary (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    passed, failed, unsupported, total = map(int, summary.groups())
    not_passed = _failed_tests(outdir)
    assert passed == total and total > 0, (
        f"{failed} failed and {unsupported} unsupported of {total} required conformance tests: "
        f"{', '.join(not_passed) or '(see ' + str(outdir / 'cwltest.log') + ')'}"
    )
