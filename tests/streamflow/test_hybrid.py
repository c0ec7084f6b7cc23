"""The hybrid example end to end: this machine, two SSH nodes and Slurm over SSH.

A real OpenSSH sshd serves the "remote" sites from a private mount namespace in which an
empty tmpfs hides the engine's local directories (the workflow's inputs, the job directories
and the output directory): a remote job that read a path of this machine instead of the
copy the DataManager sent would fail. The Slurm daemons are the test session's; the batch
scripts they run are checked to name no local path. ``examples/hybrid/streamflow.yml`` is
used as shipped, with only its connection settings pointed at the test daemons.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from streamflow.bus import EmbeddedServer
from tests.backends.slurm import SlurmInfo, slurm  # noqa: F401  (the session's Slurm)
from tests.backends.sshd import SshdInfo, sshd_skip_reason, start_sshd, stop_sshd
from tests.conftest import REPO, cli_env, run_cli

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "hybrid"
EXPECTED_REPORT = "text: poem.txt\nwords: 96\nchunk_aa 27\nchunk_ab 30\nchunk_ac 25\nchunk_ad 14\n"


@pytest.fixture
def site(tmp_path: Path, slurm: SlurmInfo) -> Iterator[dict[str, Any]]:  # noqa: F811
    """The example copied under a local directory hidden from a fresh sshd; its streamflow.yml."""
    if (reason := sshd_skip_reason()) is not None:
        pytest.skip(reason)
    local = tmp_path / "local"
    shutil.copytree(EXAMPLE, local / "hybrid")
    remote = tmp_path / "remote"
    remote.mkdir()
    info = start_sshd(tmp_path / "sshd", hide=[str(local)], setenv={"SLURM_CONF": slurm.conf})
    try:
        config = _configure(local / "hybrid" / "streamflow.yml", info, remote)
        yield {"local": local, "remote": remote, "config": config, "sshd": info}
    finally:
        stop_sshd(info)


def _configure(path: Path, info: SshdInfo, remote: Path) -> Path:
    yaml = YAML()
    doc = yaml.load(path.read_text())
    deployments = doc["deployments"]
    deployments["nodes"]["config"] = info.connector_config(nodes=["127.0.0.1", "localhost"])
    deployments["nodes"]["workdir"] = str(remote / "nodes")
    deployments["login"]["config"] = info.connector_config()
    deployments["hpc"]["config"]["pollingInterval"] = 0.3
    deployments["hpc"]["workdir"] = str(remote / "hpc")
    with path.open("w") as handle:
        yaml.dump(doc, handle)
    return path


def _events(run_id: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = run_cli(["events", run_id, "--json"], env)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def _dump(stderr: str, env: dict[str, str]) -> str:
    """The run's events, for a failure message."""
    try:
        return "\n" + run_cli(["events", _run_id(stderr)], env).stdout[-6000:]
    except StopIteration:
        return ""


def _run_id(stderr: str) -> str:
    return next(word for line in stderr.splitlines() if "run" in line for word in line.split()
                if word.startswith("r") and len(word) == 13)


def _type(event: dict[str, Any]) -> str:
    return str(event.get("type") or event.get("body", {}).get("type"))


def _body(event: dict[str, Any]) -> dict[str, Any]:
    return event.get("body", event)


def _check_outputs(local: Path, outdir: Path, stdout: str) -> None:
    outputs = json.loads(stdout)
    assert Path(outputs["report"]["path"]).read_text() == EXPECTED_REPORT
    hosts = {Path(c["path"]).read_text().split()[2] for c in outputs["counts"]}
    assert hosts  # each count file names the host its job ran on
    assert str(outdir) in outputs["report"]["path"]
    assert local.exists()


def test_hybrid_example_runs_across_local_ssh_and_slurm(site: dict[str, Any], tmp_path: Path,
                                                         nats_server: EmbeddedServer) -> None:
    local: Path = site["local"]
    env = cli_env(local, nats_server)
    outdir = local / "out"
    result = run_cli(["run", "--outdir", str(outdir), str(site["config"])], env, timeout=240)
    assert result.returncode == 0, result.stderr[-4000:] + _dump(result.stderr, env)
    _check_outputs(local, outdir, result.stdout)
    events = _events(_run_id(result.stderr), env)
    kinds = Counter(_type(e) for e in events)
    deployed = {_body(e)["deployment"]: _body(e) for e in events if _type(e) == "DeploymentDeployed"}
    assert set(deployed) >= {"nodes", "hpc"}
    assert sorted(loc["name"] for loc in deployed["nodes"]["locations"]) == ["127.0.0.1", "localhost"]
    scheduled = [_body(e) for e in events if _type(e) == "JobScheduled"]
    on_nodes = {s["location"] for s in scheduled if s["deployment"] == "nodes"}
    assert on_nodes == {"127.0.0.1", "localhost"}, "the scatter was not spread over both SSH nodes"
    assert any(s["deployment"] == "hpc" for s in scheduled)
    assert any(s["deployment"] == "__LOCAL__" for s in scheduled)
    transfers = [_body(e) for e in events if _type(e) == "DataTransferred"]
    assert transfers and all(t["bytes"] > 0 for t in transfers)
    assert {t["deployment"] for t in transfers} == {"nodes", "hpc"}
    staged = [_body(e) for e in events if _type(e) == "InputsStaged" and _body(e).get("deployment")]
    assert sum(s["bytes"] for s in staged) == sum(t["bytes"] for t in transfers)
    assert kinds["DeploymentUndeployed"] >= 2
    # The Slurm job of /sum ran in the hpc workdir, on paths of the remote side only.
    run_id = _run_id(result.stderr)
    jobs = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, timeout=30, check=True)
    ours = [line for line in jobs.stdout.splitlines() if f"JobName={run_id}-" in line]
    assert len(ours) == 1, jobs.stdout
    assert f"WorkDir={site['remote'] / 'hpc'}/" in ours[0] and "JobState=COMPLETED" in ours[0]
    assert str(local) not in ours[0]
    # The report lists the transfers.
    report = run_cli(["report", run_id, "--format", "json"], env)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["bytes_transferred"] == sum(t["bytes"] for t in transfers)
    # A completed run leaves no scratch data on the remote sites.
    assert not (site["remote"] / "nodes" / run_id).exists()
    assert not (site["remote"] / "hpc" / run_id).exists()


def test_hybrid_example_resumes_without_rerunning_or_retransferring(site: dict[str, Any],
                                                                     nats_server: EmbeddedServer) -> None:
    local: Path = site["local"]
    env = cli_env(local, nats_server)
    outdir = local / "out"
    crashed = run_cli(["run", "--outdir", str(outdir), str(site["config"])],
                      {**env, "STREAMFLOW_CRASH_AFTER": "JobCompleted:3"}, timeout=240)
    assert crashed.returncode == -9, crashed.stderr[-3000:]
    run_id = _run_id(crashed.stderr)
    before = _events(run_id, env)
    completed_before = {_body(e)["job"] for e in before if _type(e) == "JobCompleted"}
    assert len(completed_before) >= 3
    resumed = run_cli(["resume", run_id], env, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    after = _events(run_id, env)
    final = [_body(e) for e in after if _type(e) == "RunCompleted"]
    assert final
    assert Path(final[-1]["outputs"]["report"]["path"]).read_text() == EXPECTED_REPORT
    started_again = [_body(e)["job"] for e in after[len(before):] if _type(e) == "JobStarted"]
    assert not set(started_again) & completed_before, "a completed job ran again after resume"
    completions = Counter(_body(e)["job"] for e in after if _type(e) == "JobCompleted")
    assert max(completions.values()) == 1
    copies = Counter((t["path"], t["deployment"], t["location"])
                     for t in (_body(e) for e in after if _type(e) == "DataTransferred"))
    assert copies and max(copies.values()) == 1, "data that had arrived was transferred again"


def test_remote_jobs_cannot_read_local_paths(site: dict[str, Any]) -> None:
    """The guard of the tests above: the hidden directory is really empty for the remote side."""
    info: SshdInfo = site["sshd"]
    local: Path = site["local"]
    probe = subprocess.run(
        ["ssh", "-p", str(info.port), "-i", info.client_key, "-o", f"UserKnownHostsFile={info.known_hosts_file}",
         "-o", "BatchMode=yes", f"{info.username}@127.0.0.1", "ls", "-A", str(local)],
        capture_output=True, text=True, timeout=30, check=False)
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == ""
    assert any(local.iterdir())


HOSTS_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  ShellCommandRequirement: {}
inputs: []
arguments: [{shellQuote: false, valueFrom: 'echo "$STREAMFLOW_HOSTS" > hosts.txt'}]
outputs:
  hosts: {type: File, outputBinding: {glob: hosts.txt}}
"""


def test_co_allocated_job_gets_both_nodes_in_streamflow_hosts(site: dict[str, Any],
                                                               nats_server: EmbeddedServer) -> None:
    """``locations: 2``: one job holds two SSH locations at once and sees their host names."""
    local: Path = site["local"]
    info: SshdInfo = site["sshd"]
    (local / "hosts.cwl").write_text(HOSTS_TOOL)
    yaml = YAML()
    config = {
        "version": "v1.0",
        "workflows": {"pair": {"type": "cwl", "config": {"file": "hosts.cwl"},
                               "bindings": [{"step": "/", "target": {"deployment": "pair", "locations": 2}}]}},
        "deployments": {"pair": {"type": "ssh", "workdir": str(site["remote"] / "pair"),
                                 "config": info.connector_config(nodes=["127.0.0.1", "localhost"])}},
    }
    with (local / "pair.yml").open("w") as handle:
        yaml.dump(config, handle)
    env = cli_env(local, nats_server)
    result = run_cli(["run", "--outdir", str(local / "out-pair"), str(local / "pair.yml")], env, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    hosts = Path(json.loads(result.stdout)["hosts"]["path"]).read_text().strip()
    assert sorted(hosts.split(",")) == ["127.0.0.1", "localhost"]
    scheduled = [_body(e) for e in _events(_run_id(result.stderr), env) if _type(e) == "JobScheduled"]
    assert sorted(scheduled[0]["locations"]) == ["127.0.0.1", "localhost"]


TREE_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
inputs:
  tree: {type: Directory, inputBinding: {position: 1}}
  indexed:
    type: File
    secondaryFiles: [.idx]
    inputBinding: {position: 2}
baseCommand: [sh, -c, 'ls "$1" > listing.txt && cat "$2" "$2.idx" > joined.txt && pwd > where.txt', sh]
stdout: out.txt
outputs:
  listing: {type: File, outputBinding: {glob: listing.txt}}
  joined: {type: File, outputBinding: {glob: joined.txt}}
  where: {type: File, outputBinding: {glob: where.txt}}
"""


def test_remote_job_gets_directories_and_secondary_files(site: dict[str, Any],
                                                         nats_server: EmbeddedServer) -> None:
    """A Directory input and a File with a secondary file reach an SSH location that cannot see them here."""
    local: Path = site["local"]
    info: SshdInfo = site["sshd"]
    (local / "tree.cwl").write_text(TREE_TOOL)
    (local / "tree").mkdir()
    for name in ("a.txt", "b.txt"):
        (local / "tree" / name).write_text(name)
    (local / "data.txt").write_text("data\n")
    (local / "data.txt.idx").write_text("index\n")
    (local / "job.yml").write_text("tree: {class: Directory, path: tree}\nindexed: {class: File, path: data.txt}\n")
    yaml = YAML()
    config = {
        "version": "v1.0",
        "workflows": {"tree": {"type": "cwl", "config": {"file": "tree.cwl", "settings": "job.yml"},
                               "bindings": [{"step": "/", "target": {"deployment": "box"}}]}},
        "deployments": {"box": {"type": "ssh", "workdir": str(site["remote"] / "box"),
                                "config": info.connector_config()}},
    }
    with (local / "tree.yml").open("w") as handle:
        yaml.dump(config, handle)
    env = cli_env(local, nats_server)
    result = run_cli(["run", "--outdir", str(local / "out-tree"), str(local / "tree.yml")], env, timeout=120)
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = json.loads(result.stdout)
    assert Path(outputs["listing"]["path"]).read_text().split() == ["a.txt", "b.txt"]
    assert Path(outputs["joined"]["path"]).read_text() == "data\nindex\n"
    assert Path(outputs["where"]["path"]).read_text().startswith(str(site["remote"] / "box"))
