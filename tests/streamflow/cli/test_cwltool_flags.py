"""cwltool's command-line habits on ``streamflow run`` and ``streamflow-cwl-runner`` (issue 11).

Real runs against the session's NATS server (and the session's private Podman for the
container flags); a handful of workflows are also run with ``cwltool --no-container`` and
the outputs compared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.backends.podman import PodmanInfo, podman  # noqa: F401  (the session's Podman)
from tests.conftest import run_cli

DATA = Path(__file__).parents[1] / "cwl" / "data" / "beyond"
RUNNER = "streamflow.cli.main:cwl_runner_main"
ENTRY_POINTS = {"run": ("streamflow.cli.main:main", ["run"]), "cwl-runner": (RUNNER, [])}


def _cli(entry: str, args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    module, prefix = ENTRY_POINTS[entry]
    return run_cli([*prefix, *args], env, cwd=cwd, entry=module)


def _job_dirs(base: Path) -> list[Path]:
    """The run directories under a job-directory base (``<base>/<uid>-<digest>/<run>``)."""
    return sorted(p for private in base.glob("*-*") if private.is_dir() for p in private.iterdir())


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_validate_and_print_dot_without_a_job(entry: str, sf_env: dict[str, str]) -> None:
    result = _cli(entry, ["--validate", str(DATA / "pick-single.cwl")], sf_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["valid"] is True
    result = _cli(entry, ["--print-dot", str(DATA / "scatter-files.cwl")], sf_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('digraph "scatter-files"') and "/say" in result.stdout
    result = _cli(entry, ["--print-graph", str(DATA / "scatter-files.cwl"), str(DATA / "words.yml")], sf_env)
    assert result.returncode == 0 and result.stdout.startswith("digraph")
    bad = _cli(entry, ["--validate", str(DATA / "hello.txt")], sf_env)
    assert bad.returncode == 2


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_job_directories_prefixes_and_leave_tmpdir(entry: str, tmp_path: Path, sf_env: dict[str, str]) -> None:
    words = str(DATA / "words.yml")
    common = ["--quiet", "--parallel", "--outdir", str(tmp_path / "out"), str(DATA / "scatter-files.cwl"), words]
    # By default a completed run's job directories are removed ($TMPDIR/streamflow-jobs).
    result = _cli(entry, common, sf_env)
    assert result.returncode == 0, result.stderr
    assert _job_dirs(tmp_path / "streamflow-jobs") == []
    assert (tmp_path / "out" / "all.txt").read_text() == "one\ntwo\nthree\n"
    # --tmpdir-prefix DIR/ puts them there; --leave-tmpdir keeps them.
    result = _cli(entry, ["--tmpdir-prefix", str(tmp_path / "pfx") + "/", "--leave-tmpdir", *common], sf_env)
    assert result.returncode == 0, result.stderr
    kept = _job_dirs(tmp_path / "pfx")
    assert len(kept) == 1 and len(list(kept[0].iterdir())) == 4  # 3 scattered jobs + the join
    # --tmp-outdir-prefix wins over --tmpdir-prefix; a prefix not ending in / names its directory's.
    result = _cli(entry, ["--tmpdir-prefix", str(tmp_path / "a") + "/", "--tmp-outdir-prefix",
                          str(tmp_path / "b" / "cwl-"), "--leave-outputs", *common], sf_env)
    assert result.returncode == 0, result.stderr
    assert len(_job_dirs(tmp_path / "b")) == 1 and not (tmp_path / "a").exists()


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_cachedir_reuses_identical_jobs_across_runs(entry: str, tmp_path: Path, sf_env: dict[str, str]) -> None:
    cache = tmp_path / "cache"
    args = ["--cachedir", str(cache), str(DATA / "scatter-files.cwl")]
    first = _cli(entry, ["--outdir", str(tmp_path / "out1"), *args, str(DATA / "words.yml")], sf_env)
    assert first.returncode == 0, first.stderr
    second = _cli(entry, ["--outdir", str(tmp_path / "out2"), *args, str(DATA / "words.yml")], sf_env)
    assert second.returncode == 0, second.stderr
    assert _comparable(json.loads(second.stdout)) == _comparable(json.loads(first.stdout))
    assert (tmp_path / "out2" / "all.txt").read_text() == "one\ntwo\nthree\n"
    run_ids = [r["run_id"] for r in json.loads((cache / "streamflow-cache.json").read_text())["runs"]]
    assert len(run_ids) == 2
    events = run_cli(["events", run_ids[1], "--json"], sf_env)
    types = [json.loads(line)["type"] for line in events.stdout.splitlines()]
    assert types.count("JobReused") == 4 and "JobStarted" not in types
    # A changed input: the changed scattered jobs and the join run again, the others are reused.
    changed = tmp_path / "changed.yml"
    changed.write_text("words: [one, two, four]\n")
    third = _cli(entry, ["--outdir", str(tmp_path / "out3"), *args, str(changed)], sf_env)
    assert third.returncode == 0, third.stderr
    run_id = json.loads((cache / "streamflow-cache.json").read_text())["runs"][-1]["run_id"]
    types = [json.loads(line)["type"] for line in run_cli(["events", run_id, "--json"], sf_env).stdout.splitlines()]
    assert types.count("JobReused") == 2 and types.count("JobCompleted") == 2
    assert (tmp_path / "out3" / "all.txt").read_text() == "one\ntwo\nfour\n"


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_provenance_debug_and_quiet(entry: str, tmp_path: Path, sf_env: dict[str, str]) -> None:
    result = _cli(entry, ["--provenance", "prov", "--debug", "--outdir", "out", str(DATA / "pick-single.cwl"),
                          str(DATA / "pick.yml")], sf_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    crate = json.loads((tmp_path / "prov" / "ro-crate-metadata.json").read_text())
    assert any("CreateAction" in str(entity.get("@type")) for entity in crate["@graph"])
    assert "provenance (RO-Crate) written to" in result.stderr
    assert '"level": "debug"' in result.stderr or "[debug" in result.stderr
    quiet = _cli(entry, ["--quiet", "--outdir", "out", str(DATA / "pick-single.cwl"), str(DATA / "pick.yml")],
                 sf_env, cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


# --- containers ------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_no_container_and_image_pull_failures(entry: str, tmp_path: Path, sf_env: dict[str, str],
                                              podman: PodmanInfo) -> None:  # noqa: F811
    env = {**sf_env, **podman.env, "STREAMFLOW_CONTAINER_ENGINE": "podman"}
    out = ["--outdir", str(tmp_path / "out")]
    # A required image that cannot be pulled: the job fails naming the image and the engine.
    failed = _cli(entry, [*out, str(DATA / "docker-required.cwl")], env)
    assert failed.returncode == 1
    assert "cannot pull image 'localhost:9/streamflow-test/missing:1' with podman" in failed.stderr
    # --no-container: on the host, whatever the engine.
    host = _cli(entry, ["--no-container", *out, str(DATA / "docker-required.cwl")], env)
    assert host.returncode == 0, host.stderr
    assert (tmp_path / "out" / "out.txt").read_text() == "ran\n"
    # Only a hint: the tool runs on the host, with a warning naming the image.
    hinted = _cli(entry, [*out, str(DATA / "docker-hint.cwl")], env)
    assert hinted.returncode == 0, hinted.stderr
    assert "container_hint_ignored" in hinted.stderr and "streamflow-test/missing" in hinted.stderr


def test_no_container_is_kept_by_resume(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """The choice is recorded with the run: the graph rebuilt from the log runs on the host too."""
    result = run_cli(["run", "--quiet", "--no-container", "--run-id", "nocontainer1", "--outdir",
                      str(tmp_path / "out"), str(DATA / "docker-required.cwl")], sf_env)
    assert result.returncode == 0, result.stderr
    events = run_cli(["events", "nocontainer1", "--json", "--type", "RunSubmitted"], sf_env)
    submitted = json.loads(events.stdout.splitlines()[0])
    assert submitted["inputs"]["streamflow:container"] == "none"


# --- the same outputs as cwltool -------------------------------------------------------------


COMPARED = [
    ("pick-single.cwl", "pick.yml"),
    ("load-contents.cwl", "load-contents.yml"),
    ("load-contents-wf.cwl", "load-contents.yml"),
    ("schemadef-outputs.cwl", "msg.yml"),
    ("scatter-files.cwl", "words.yml"),
    ("namespaced-hint.cwl", "msg.yml"),
]


def _comparable(value: Any) -> Any:
    """An output object without what legitimately differs between runners (paths, locations)."""
    if isinstance(value, list):
        return [_comparable(v) for v in value]
    if isinstance(value, dict):
        if value.get("class") in ("File", "Directory"):
            keep = ("class", "basename", "checksum", "size", "contents")
            result = {k: value[k] for k in keep if k in value}
            if "listing" in value:
                result["listing"] = _comparable(value["listing"])
            return result
        return {k: _comparable(v) for k, v in value.items()}
    return value


@pytest.mark.slow
def test_same_outputs_as_cwltool(tmp_path: Path, sf_env: dict[str, str]) -> None:
    cwltool = shutil.which("cwltool", path=os.path.dirname(sys.executable)) or shutil.which("cwltool")
    if cwltool is None:
        pytest.skip("cwltool is not installed (a test dependency)")
    special = tmp_path / "my docs é"  # cwltool itself cannot load paths with "+", "%" or "#"
    special.mkdir()
    for name in ("namespaced-hint.cwl", "msg.yml"):
        shutil.copy(DATA / name, special / name)
    cases = [(DATA / d, DATA / j) for d, j in COMPARED] + [(special / "namespaced-hint.cwl", special / "msg.yml")]
    for index, (document, job) in enumerate(cases):
        theirs = subprocess.run([cwltool, "--quiet", "--no-container", "--outdir", str(tmp_path / f"cwl-{index}"),
                                 str(document), str(job)], capture_output=True, text=True, timeout=120,
                                check=False, env={**sf_env, "TMPDIR": str(tmp_path)})
        assert theirs.returncode == 0, (document, theirs.stderr)
        expected = _comparable(json.loads(theirs.stdout))
        # both entry points on one workflow (they share the code path), `streamflow run` on all
        for entry in sorted(ENTRY_POINTS) if document.name == "scatter-files.cwl" else ["run"]:
            ours = _cli(entry, ["--quiet", "--outdir", str(tmp_path / f"sf-{index}-{entry}"), str(document),
                                str(job)], sf_env)
            assert ours.returncode == 0, (document, ours.stderr)
            assert _comparable(json.loads(ours.stdout)) == expected, document
