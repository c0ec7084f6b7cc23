"""Tests of the queue-manager connectors (``slurm``, ``pbs``, ``flux``).

Slurm and PBS run against a real single-node Slurm (``tests/backends/slurm.py``); PBS through
the ``qsub``/``qstat``/``qdel`` wrappers of Debian's ``slurm-wlm-torque`` over it. Flux is not
packaged here: only the scripts and command lines its connector builds are checked.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from streamflow.config import load_config
from streamflow.connectors.flux import FluxConnector
from streamflow.connectors.local import LocalConnector
from streamflow.connectors.pbs import PBSConnector
from streamflow.connectors.queue_manager import QueueManagerConnector
from streamflow.connectors.slurm import SlurmConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.deployment.manager import DefaultDeploymentManager
from streamflow.errors import ConfigError, DeploymentError
from streamflow.plugins import Registry
from tests.backends.slurm import ETC_SLURM_CONF, SlurmInfo, slurm, start_slurm, stop_slurm
from tests.backends.sshd import SshdInfo, sshd

__all__ = ["slurm", "sshd"]  # the session fixtures, imported so that pytest finds them here

POLL = 0.2


class _Context:
    """The attributes of a StreamFlowContext the deployment manager uses."""

    def __init__(self, config_dir: str) -> None:
        self.config: dict[str, Any] = {"config_dir": config_dir}


def _jobs(name: str, env: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The Slurm records (``scontrol show job -o``) of the jobs named ``name``."""
    output = subprocess.run(
        ["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=False, env=env
    ).stdout
    records = []
    for line in output.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if fields.get("JobName") == name:
            records.append(fields)
    return records


async def _until(predicate: Callable[[], bool], deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def _final_state(name: str) -> str:
    [record] = _jobs(name)
    return record["JobState"]


async def _location(connector: QueueManagerConnector, service: str | None = None) -> ExecutionLocation:
    locations = await connector.get_available_locations(service)
    return next(iter(locations.values())).location


@pytest.fixture
async def connector(slurm: SlurmInfo, tmp_path: Path) -> AsyncIterator[SlurmConnector]:
    """A deployed slurm connector on this machine (no wraps), polling every 0.2 s."""
    connector = SlurmConnector(
        "hpc",
        str(tmp_path),
        pollingInterval=POLL,
        maxConcurrentJobs=2,
        services={"two": {"cpusPerTask": 2, "partition": slurm.partition, "time": "00:05:00"}},
    )
    await connector.deploy(external=False)
    try:
        yield connector
    finally:
        await connector.undeploy(external=False)


# --- slurm, real jobs -------------------------------------------------------------------------------


async def test_exit_codes_and_output_files(connector: SlurmConnector, tmp_path: Path) -> None:
    """A job's exit code (0, 3) is returned; stdout and stderr land in their files."""
    loc = await _location(connector)
    work = tmp_path / "w"
    code = await connector.run(
        loc,
        ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"],
        workdir=str(work),
        stdout="out/stdout.txt",
        stderr=str(work / "err" / "stderr.txt"),
        job_name="exit3",
    )
    assert code == 3
    assert (work / "out" / "stdout.txt").read_text() == "to-out\n"
    assert (work / "err" / "stderr.txt").read_text() == "to-err\n"
    assert await connector.run(loc, ["true"], workdir=str(work), job_name="exit0") == 0
    assert _final_state("exit3") == "FAILED" and _final_state("exit0") == "COMPLETED"
    assert not [p.name for p in work.iterdir() if p.name.startswith(".sf-")], "job files are left behind"


async def test_environment_workdir_stdin_and_capture(connector: SlurmConnector, tmp_path: Path) -> None:
    """environment is exported (quoted), the job runs in workdir, stdin is read, output captured."""
    loc = await _location(connector)
    (tmp_path / "in.txt").write_text("from stdin\n")
    value = 'it\'s $HOME; `x` "q"\nline2'
    output, code = await connector.run(  # type: ignore[misc]
        loc,
        ["sh", "-c", 'pwd; printf "%s|" "$SF_V"; echo; cat; echo "$1"', "sh", "a b;c"],
        environment={"SF_V": value},
        workdir=str(tmp_path),
        stdin="in.txt",
        capture_output=True,
        job_name="envjob",
    )
    assert code == 0
    assert output == f"{tmp_path}\n{value}|\nfrom stdin\na b;c"


async def test_probe_runs_on_the_login_node_without_a_job(connector: SlurmConnector, tmp_path: Path) -> None:
    """A run without job_name is not submitted: it runs at once where the wrapped connector runs."""
    loc = await _location(connector)
    marker = f"probe{os.getpid()}"
    assert await connector.run(loc, ["sh", "-c", f"echo {marker}; exit 2"], capture_output=True) == (
        marker,
        2,
    )
    assert await connector.run(loc, ["sh", "-c", "echo $SLURM_JOB_ID"], capture_output=True) == ("", 0)
    assert _jobs(marker) == []


async def test_service_options_reach_the_job(connector: SlurmConnector, slurm: SlurmInfo) -> None:
    """A target's service picks #SBATCH options: --cpus-per-task=2 is what the job gets."""
    loc = await _location(connector, "two")
    assert loc.service == "two" and loc.wraps is not None
    output, code = await connector.run(  # type: ignore[misc]
        loc,
        ["sh", "-c", 'echo "$SLURM_CPUS_PER_TASK $SLURM_JOB_NAME $SLURM_JOB_PARTITION"'],
        capture_output=True,
        job_name="svc/job 1",
    )
    assert (output, code) == (f"2 svc_job_1 {slurm.partition}", 0)
    [record] = _jobs("svc_job_1")
    assert record["CPUs/Task"] == "2" and record["TimeLimit"] == "00:05:00"


async def test_file_template(slurm: SlurmInfo, tmp_path: Path) -> None:
    """A `file` template wraps the command; its own #SBATCH lines apply; $? is the command's."""
    (tmp_path / "tpl.sh").write_text(
        "#!/bin/bash\n#SBATCH --comment=from-template\necho before\n{{ streamflow_command }}\necho after=$?\n"
    )
    connector = SlurmConnector("hpc", str(tmp_path), file="tpl.sh", pollingInterval=POLL)
    await connector.deploy(external=False)
    try:
        loc = await _location(connector)
        output, code = await connector.run(  # type: ignore[misc]
            loc, ["sh", "-c", "echo inside; exit 5"], capture_output=True, job_name="tpljob"
        )
    finally:
        await connector.undeploy(external=False)
    assert (output, code) == ("before\ninside\nafter=5", 0)
    assert _jobs("tpljob")[0]["Comment"] == "from-template"


async def test_max_concurrent_jobs_serializes(slurm: SlurmInfo, tmp_path: Path) -> None:
    """maxConcurrentJobs: 1 runs two jobs one after the other; 2 lets them overlap."""

    async def intervals(limit: int) -> list[tuple[float, float]]:
        connector = SlurmConnector("hpc", str(tmp_path), maxConcurrentJobs=limit, pollingInterval=POLL)
        await connector.deploy(external=False)
        try:
            loc = await _location(connector)
            assert (await connector.get_available_locations())["hpc"].slots == limit
            script = "date +%s.%N; sleep 1.5; date +%s.%N"
            results = await asyncio.gather(
                *(
                    connector.run(loc, ["sh", "-c", script], capture_output=True, job_name=f"c{limit}-{i}")
                    for i in range(2)
                )
            )
        finally:
            await connector.undeploy(external=False)
        spans = []
        for output, code in results:  # type: ignore[misc]
            assert code == 0
            start, end = map(float, output.split())
            spans.append((start, end))
        return sorted(spans)

    first, second = await intervals(1)
    assert second[0] >= first[1], "with maxConcurrentJobs 1 the jobs overlapped"
    first, second = await intervals(2)
    assert second[0] < first[1], "with maxConcurrentJobs 2 the jobs did not overlap (the test proves nothing)"


async def test_timeout_cancels_the_job(connector: SlurmConnector) -> None:
    """On timeout the job is scancel'ed (CANCELLED in Slurm) and CommandTimeoutError raised."""
    loc = await _location(connector)
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError, match="timed out"):
        await connector.run(loc, ["sleep", "60"], timeout=3, job_name="timeoutjob")
    assert time.monotonic() - started < 10
    await _until(lambda: _final_state("timeoutjob") in ("CANCELLED", "TIMEOUT"))


async def test_cancelling_the_task_scancels_the_job(connector: SlurmConnector) -> None:
    """Cancelling the awaiting task cancels the Slurm job."""
    loc = await _location(connector)
    task = asyncio.create_task(connector.run(loc, ["sleep", "60"], job_name="canceljob"))
    await _until(lambda: bool(_jobs("canceljob")) and _final_state("canceljob") == "RUNNING")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _until(lambda: _final_state("canceljob") == "CANCELLED")


async def test_cancellation_at_any_point_leaves_no_job(connector: SlurmConnector, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Whenever the task is cancelled (before, during or after sbatch), no job is left in the queue,
    and none of its files in the directory it ran in (here the current one: no workdir)."""
    monkeypatch.chdir(tmp_path)
    loc = await _location(connector)
    for i, delay in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.4)):
        name = f"orphan{i}"
        task = asyncio.create_task(connector.run(loc, ["sleep", "60"], job_name=name))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await _until(lambda name=name: all(job["JobState"] == "CANCELLED" for job in _jobs(name)))
    await _until(lambda: not list(tmp_path.glob(".sf-*")))


async def test_undeploy_cancels_running_jobs(slurm: SlurmInfo, tmp_path: Path) -> None:
    """undeploy scancels the jobs still in the queue; their run returns a failure code."""
    connector = SlurmConnector("hpc", str(tmp_path), pollingInterval=POLL)
    await connector.deploy(external=False)
    loc = await _location(connector)
    task = asyncio.create_task(connector.run(loc, ["sleep", "60"], job_name="undeployjob"))
    await _until(lambda: bool(_jobs("undeployjob")) and _final_state("undeployjob") == "RUNNING")
    await connector.undeploy(external=False)
    assert _final_state("undeployjob") in ("CANCELLED", "COMPLETING")
    assert await asyncio.wait_for(task, 20) in (1, 143)
    await _until(lambda: _final_state("undeployjob") == "CANCELLED")


async def test_job_killed_by_the_queue_is_a_failure(connector: SlurmConnector) -> None:
    """A job cancelled by someone else ends run with a non-zero code (128+SIGTERM), not a hang."""
    loc = await _location(connector)
    task = asyncio.create_task(connector.run(loc, ["sleep", "60"], job_name="killedjob"))
    await _until(lambda: bool(_jobs("killedjob")) and _final_state("killedjob") == "RUNNING")
    subprocess.run(["scancel", _jobs("killedjob")[0]["JobId"]], check=True)
    code = await asyncio.wait_for(task, 20)
    assert code != 0 and code in (1, 143)


async def test_signal_exit_code(connector: SlurmConnector) -> None:
    """A command killed by a signal gives 128+n."""
    loc = await _location(connector)
    assert await connector.run(loc, ["sh", "-c", "kill -9 $$"], job_name="sigjob") == 137


async def test_copies_go_to_the_login_node(connector: SlurmConnector, tmp_path: Path) -> None:
    """Copies and streams are delegated to the wrapped connector."""
    loc = await _location(connector)
    (tmp_path / "src.txt").write_text("payload")
    await connector.copy_local_to_remote(str(tmp_path / "src.txt"), str(tmp_path / "a" / "dst.txt"), [loc])
    await connector.copy_remote_to_remote(
        str(tmp_path / "a" / "dst.txt"), str(tmp_path / "b.txt"), [loc], loc
    )
    await connector.copy_remote_to_local(str(tmp_path / "b.txt"), str(tmp_path / "c.txt"), loc)
    assert (tmp_path / "c.txt").read_text() == "payload"
    async with connector.get_stream_reader(["cat", str(tmp_path / "c.txt")], loc) as stream:
        assert await stream.read() == b"payload"


async def test_slurm_over_ssh_with_linked_etc(
    sshd: SshdInfo, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A Slurm started with link_etc answers sbatch from plain ssh sessions (no SLURM_CONF there)."""
    from streamflow.connectors.ssh import SSHConnector

    before = os.readlink(ETC_SLURM_CONF) if os.path.islink(ETC_SLURM_CONF) else None
    info = start_slurm(tmp_path_factory.mktemp("slurm-etc"), link_etc=True)
    login = SSHConnector("login", str(tmp_path), **sshd.connector_config())
    connector = SlurmConnector("hpc", str(tmp_path), connector=login, pollingInterval=POLL)
    try:
        assert os.path.realpath(ETC_SLURM_CONF) == info.conf
        await login.deploy(external=False)
        await connector.deploy(external=False)
        [available] = (await connector.get_available_locations()).values()
        assert available.wraps is not None and available.wraps.deployment == "login"
        loc = available.location
        assert await connector.run(loc, ["sh", "-c", "echo ${SLURM_CONF:-unset}"], capture_output=True) == (
            "unset",
            0,
        )
        output, code = await connector.run(  # type: ignore[misc]
            loc,
            ["sh", "-c", 'echo "$SLURM_JOB_NAME $SF_Y"; exit 6'],
            environment={"SF_Y": "over ssh"},
            workdir=str(tmp_path / "remote"),
            capture_output=True,
            job_name="sshjob",
        )
        assert (output, code) == ("sshjob over ssh", 6)
        assert _jobs("sshjob", info.client_env())[0]["JobState"] == "FAILED"
    finally:
        await connector.undeploy(external=False)
        await login.undeploy(external=False)
        stop_slurm(info)
    after = os.readlink(ETC_SLURM_CONF) if os.path.islink(ETC_SLURM_CONF) else None
    assert after == (before if before and os.path.exists(before) else None)


def test_nested_linked_etc_slurms_restore_the_link(
    slurm: SlurmInfo, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second link_etc Slurm takes /etc/slurm/slurm.conf over and gives it back when stopped."""
    before = os.readlink(ETC_SLURM_CONF) if os.path.islink(ETC_SLURM_CONF) else None
    first = start_slurm(tmp_path_factory.mktemp("slurm-a"), link_etc=True)
    try:
        second = start_slurm(tmp_path_factory.mktemp("slurm-b"), link_etc=True)
        try:
            assert os.readlink(ETC_SLURM_CONF) == second.conf and second.previous_etc_link == first.conf
            env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
            answer = subprocess.run(["scontrol", "show", "config"], env=env, capture_output=True, text=True)
            assert f"SlurmctldPort           = {second.controller_port}" in answer.stdout
        finally:
            stop_slurm(second)
        assert os.readlink(ETC_SLURM_CONF) == first.conf
    finally:
        stop_slurm(first)
    after = os.readlink(ETC_SLURM_CONF) if os.path.islink(ETC_SLURM_CONF) else None
    assert after == (before if before and os.path.exists(before) else None)


# --- pbs through the torque wrappers ------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("qsub") is None, reason="qsub is not installed (Debian package slurm-wlm-torque)"
)
async def test_pbs_job_through_torque_wrappers(slurm: SlurmInfo, tmp_path: Path) -> None:
    """A pbs job (qsub/qstat/qdel wrappers over Slurm): exit code, output, #PBS options, timeout."""
    connector = PBSConnector(
        "pbs",
        str(tmp_path),
        pollingInterval=POLL,
        services={"q": {"destination": slurm.partition, "resources": {"walltime": "00:04:00"}}},
    )
    await connector.deploy(external=False)
    try:
        loc = await _location(connector, "q")
        code = await connector.run(
            loc,
            ["sh", "-c", 'echo "pbs $SF_X"; exit 4'],
            environment={"SF_X": "x y"},
            workdir=str(tmp_path),
            stdout="pbs.out",
            job_name="pbs-job",
        )
        assert code == 4
        assert (tmp_path / "pbs.out").read_text() == "pbs x y\n"
        [record] = _jobs("pbs-job")
        assert record["TimeLimit"] == "00:04:00" and record["Partition"] == slurm.partition
        assert await connector.run(loc, ["true"], job_name="pbs-ok") == 0
        with pytest.raises(CommandTimeoutError):
            await connector.run(loc, ["sleep", "60"], timeout=2, job_name="pbs-timeout")
        await _until(lambda: _final_state("pbs-timeout") == "CANCELLED")
    finally:
        await connector.undeploy(external=False)


# --- deployment manager ------------------------------------------------------------------------------

_STREAMFLOW_YML = """\
version: v1.0
workflows:
  demo:
    type: cwl
    config: {{file: wf.cwl}}
    bindings:
      - step: /
        target: {{deployment: hpc, service: small}}
deployments:
  login:
    type: local
    config: {{}}
  hpc:
    type: slurm
{wraps}    config:
      pollingInterval: 0.2
      maxConcurrentJobs: 3
      services:
        small:
          cpusPerTask: 1
          mem: 100M
"""


def _streamflow_yml(tmp_path: Path, text: str) -> Path:
    (tmp_path / "wf.cwl").write_text(
        "cwlVersion: v1.2\nclass: Workflow\ninputs: []\noutputs: []\nsteps: []\n"
    )
    path = tmp_path / "streamflow.yml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("wraps", [True, False], ids=["wraps-local", "no-wraps"])
async def test_manager_builds_slurm_deployment(slurm: SlurmInfo, tmp_path: Path, wraps: bool) -> None:
    """streamflow.yml → DefaultDeploymentManager → a slurm connector, with and without wraps."""
    config = load_config(
        _streamflow_yml(tmp_path, _STREAMFLOW_YML.format(wraps="    wraps: login\n" if wraps else ""))
    )
    manager = DefaultDeploymentManager(_Context(str(tmp_path)), Registry.default())  # type: ignore[arg-type]
    for deployment in config.deployments.values():
        manager.register(deployment)
    await manager.deploy(config.deployments["hpc"])
    try:
        assert manager.deployed == (["login", "hpc"] if wraps else ["hpc"])
        connector = await manager.get_connector("hpc")
        assert isinstance(connector, SlurmConnector)
        if wraps:
            assert connector.connector is await manager.get_connector("login")
        else:
            assert isinstance(connector.connector, LocalConnector)
        [available] = (await connector.get_available_locations("small")).values()
        assert available.slots == 3 and available.hardware is not None
        assert (available.hardware.cores, available.hardware.memory) == (1.0, 100.0)
        assert available.wraps is not None and available.wraps.name == "localhost"
        name = f"mgr-{wraps}"
        output, code = await connector.run(  # type: ignore[misc]
            available.location, ["sh", "-c", "echo $SLURM_JOB_NAME"], capture_output=True, job_name=name
        )
        assert (output, code) == (name, 0)
    finally:
        await manager.close()


# --- configuration and schema (no queue needed) -------------------------------------------------------


@pytest.mark.parametrize("cls", [SlurmConnector, PBSConnector, FluxConnector])
def test_schema_describes_every_key(cls: type[QueueManagerConnector]) -> None:
    """Every property of the schema, nested ones included, has a description."""

    def walk(schema: dict[str, Any], where: str) -> None:
        for key, sub in schema.get("properties", {}).items():
            assert sub.get("description"), f"{where}.{key} has no description"
            walk(sub, f"{where}.{key}")
        if isinstance(schema.get("additionalProperties"), dict):
            walk(schema["additionalProperties"], f"{where}.*")

    schema = cls.get_schema()
    assert schema["additionalProperties"] is False
    walk(schema, cls.kind)


def test_streamflow_yml_rejects_bad_services(tmp_path: Path) -> None:
    """Unknown service options and wrong types are ConfigErrors naming the key."""
    text = _STREAMFLOW_YML.format(wraps="").replace("mem: 100M", "memory: 100M")
    with pytest.raises(ConfigError, match=r"deployments\.hpc\.config.*memory"):
        load_config(_streamflow_yml(tmp_path, text))
    text = _STREAMFLOW_YML.format(wraps="").replace("cpusPerTask: 1", "cpusPerTask: many")
    with pytest.raises(ConfigError, match=r"deployments\.hpc\.config.*cpusPerTask"):
        load_config(_streamflow_yml(tmp_path, text))


def test_constructor_config_errors(tmp_path: Path) -> None:
    """Direct construction checks options and templates, naming the deployment and field."""
    with pytest.raises(ConfigError, match=r"'hpc'.*services\.s\.bogus"):
        SlurmConnector("hpc", str(tmp_path), services={"s": {"bogus": 1}})
    with pytest.raises(ConfigError, match=r"'hpc'.*services\.s\.partition.*line break"):
        SlurmConnector("hpc", str(tmp_path), services={"s": {"partition": "a\n#SBATCH --x"}})
    with pytest.raises(ConfigError, match=r"'hpc'.*file.*cannot read"):
        SlurmConnector("hpc", str(tmp_path), file="missing.sh")
    (tmp_path / "t.sh").write_text("#!/bin/sh\necho no placeholder\n")
    with pytest.raises(ConfigError, match=r"'hpc'.*file.*streamflow_command"):
        SlurmConnector("hpc", str(tmp_path), file="t.sh")
    (tmp_path / "t.sh").write_text("#!/bin/sh\n{{ streamflow_command }} {{ other }}\n")
    with pytest.raises(ConfigError, match=r"unknown placeholders \['other'\]"):
        SlurmConnector("hpc", str(tmp_path), file="t.sh")
    with pytest.raises(ConfigError, match=r"'hpc'.*no service named 'nope'"):
        SlurmConnector("hpc", str(tmp_path)).build_script(["true"], service="nope")
    with pytest.raises(ConfigError, match="maxConcurrentJobs"):
        PBSConnector("hpc", str(tmp_path), maxConcurrentJobs=0)


def test_slurm_script_and_submission(tmp_path: Path) -> None:
    """The generated sbatch script: shebang, service directives, quoted command, exit $?."""
    connector = SlurmConnector(
        "hpc",
        str(tmp_path),
        services={"s": {"partition": "p", "exclusive": True, "nodes": 2, "requeue": False}},
    )
    script = connector.build_script(["echo", "a b"], {"X": "1"}, "/w d", None, "s", "/w d/.sf.rc")
    lines = script.splitlines()
    assert lines[:4] == ["#!/bin/sh", "#SBATCH --partition=p", "#SBATCH --exclusive", "#SBATCH --nodes=2"]
    assert "( cd '/w d' && export X=1 && exec echo 'a b' </dev/null )" in lines[4]
    assert lines[-1] == "exit $?"
    assert connector.submit_command("/w/j.sh", "n", "/w", "/w/o%1", None) == [
        "sbatch", "--parsable", "--job-name=n", "--chdir=/w", "--output=/w/o%%1", "/w/j.sh",
    ]  # fmt: skip
    assert connector.parse_job_id("sbatch: warning: x\n42;cluster\n") == "42"


def test_flux_script_and_commands(tmp_path: Path) -> None:
    """Flux (not installed here): #flux: directives, default one slot, batch/jobs/cancel argv, states."""
    connector = FluxConnector(
        "fx", str(tmp_path), services={"s": {"nodes": 2, "timeLimit": "10m", "exclusive": True}}
    )
    lines = connector.build_script(["hostname"], None, "/w", None, "s", None).splitlines()
    assert lines[:4] == ["#!/bin/sh", "#flux: --nodes=2", "#flux: --time-limit=10m", "#flux: --exclusive"]
    assert connector.build_script(["hostname"]).splitlines()[1] == "#flux: --nslots=1"
    assert connector.submit_command("/w/j.sh", "job", "/w", "/w/out", "/w/err") == [
        "flux", "batch", "--job-name=job", "--output=/w/out", "--error=/w/err", "/w/j.sh",
    ]  # fmt: skip
    assert connector.parse_job_id("ƒ2zUJdh4Rt\n") == "ƒ2zUJdh4Rt"
    assert connector.status_command("ƒ2") == ["flux", "jobs", "-n", "-o", "{state} {returncode}", "ƒ2"]
    assert connector.cancel_command("ƒ2") == ["flux", "cancel", "ƒ2"]
    assert connector.parse_status("RUN \n", 0) == connector.parse_status("RUN", 0)
    status = connector.parse_status("RUN", 0)
    assert status is not None and not status.done
    assert [connector.parse_status(f"INACTIVE {rc}", 0) for rc in ("0", "3", "-9", "-128")] == [
        type(status)(state="INACTIVE", done=True, exit_code=code) for code in (0, 3, 137, 1)
    ]
    assert connector.parse_status("flux-jobs: ERROR: job ƒ2 not found", 1) is None


@pytest.mark.skipif(shutil.which("flux") is not None, reason="flux is installed here")
async def test_flux_deploy_without_flux_is_a_clear_error(tmp_path: Path) -> None:
    """Deploying flux where no `flux` command exists fails naming the program."""
    connector = FluxConnector("fx", str(tmp_path))
    with pytest.raises(DeploymentError, match=r"'fx'.*flux is not found"):
        await connector.deploy(external=False)
    await connector.undeploy(external=False)


def test_pbs_directives_and_status(tmp_path: Path) -> None:
    """#PBS lines from a service; qstat -f states and exit codes."""
    connector = PBSConnector(
        "pbs",
        str(tmp_path),
        services={"s": {"destination": "workq", "resources": {"nodes": "1:ppn=4", "walltime": "01:00:00"}}},
    )
    lines = connector.build_script(["true"], service="s").splitlines()
    assert lines[1:3] == ["#PBS -q workq", "#PBS -l nodes=1:ppn=4,walltime=01:00:00"]
    hardware = connector.hardware(connector.services["s"])
    assert hardware is not None and hardware.cores == 4.0
    assert connector.job_name("0123456789abcdefghij") == "sf0123456789abc"
    status = connector.parse_status("Job Id: 7\n    job_state = F\n    Exit_status = 271\n", 0)
    assert status is not None and status.done and status.exit_code == 143
    status = connector.parse_status("Job Id: 7\n\tjob_state = R\n", 0)
    assert status is not None and not status.done
    assert connector.parse_status("qstat: Unknown Job Id 7", 153) is None
