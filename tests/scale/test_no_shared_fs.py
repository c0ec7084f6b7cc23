"""Agents that share no filesystem: files travel through the JetStream object store.

Each agent runs in its own mount namespace with a private tmpfs as its work directory
(`unshare -m`), so a file one agent produces is invisible to the other agent and to the
submitting process: the run completes only if outputs are published to the bus and
fetched from it. Skipped where mount namespaces cannot be created (not root, no unshare).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "wordcount"
CODE = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _namespaces_available(tmp: Path) -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = tmp / "probe"
    probe.mkdir()
    result = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                             f"mount -t tmpfs tmpfs {probe} && touch {probe}/x"], capture_output=True, check=False)
    return result.returncode == 0 and not (probe / "x").exists()


def test_run_across_agents_with_private_filesystems(tmp_path: Path, agent_env: dict[str, str]) -> None:
    """Two agents with private work directories and a --workers 0 submitter complete the wordcount example."""
    if not _namespaces_available(tmp_path):
        pytest.skip("mount namespaces are not available here (needs root and unshare)")
    agents = []
    workdirs = [tmp_path / f"agent{n}" for n in range(2)]
    for workdir in workdirs:
        workdir.mkdir()
    # Every agent gets private (empty) copies of all the agents' work directories.
    mounts = " && ".join(f'mount -t tmpfs tmpfs "{w}"' for w in workdirs)
    for n, workdir in enumerate(workdirs):
        script = (f'{mounts} && exec "{sys.executable}" -c "$0" agent --workdir "{workdir}" '
                  f'--no-shared-fs --workers 1 --name agent{n}')
        agents.append(subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, CODE],
                                       env=agent_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        result = run_cli(["run", "--run-id", "noshare", "--workers", "0", "--no-shared-fs", "--workdir",
                          str(tmp_path / "submitter"), "--outdir", str(tmp_path / "out"),
                          str(EXAMPLE / "wordcount.cwl"), str(EXAMPLE / "job.yml")], agent_env, timeout=180)
        assert result.returncode == 0, result.stderr
        outputs = json.loads(result.stdout)
        assert outputs["total_lines"] == 16
        report = Path(outputs["report"]["path"])
        assert report.read_text().startswith("MY CORPUS")
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.communicate()
    # Outside the namespaces only what the submitter fetched from the bus exists: the outputs.
    fetched = {p for w in workdirs for p in w.rglob("*") if p.is_file()}
    assert {p.name for p in fetched} == {"report.txt"}
    events = [json.loads(line) for line in run_cli(["events", "noshare", "--json"], agent_env).stdout.splitlines()]
    workers = {e["worker"] for e in events if e["type"] == "JobStarted"}
    assert workers <= {"agent0", "agent1"} and workers
