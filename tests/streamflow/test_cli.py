"""``streamflow`` and ``streamflow-cwl-runner`` as subprocesses against the session's nats-server."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from events.log import EventLog
from streamflow.bus import EmbeddedServer
from tests.conftest import cli_env, run_cli

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'tr a-z A-Z < "$0"; echo "$1"']
inputs:
  text: {type: File, inputBinding: {position: 1}}
  times: {type: int, inputBinding: {position: 2}}
stdout: shout.txt
outputs:
  shout: stdout
"""

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  texts: File[]
  times: int
outputs:
  shouts:
    type: File[]
    outputSource: shout/shout
steps:
  shout:
    run: tool.cwl
    scatter: text
    in: {text: texts, times: times}
    out: [shout]
"""


def _env(home: Path, server: EmbeddedServer) -> dict[str, str]:
    return cli_env(home, server)


def _write(root: Path, name: str, text: str) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@dataclass
class CompletedRun:
    """A workflow run through ``streamflow run`` once for the whole module."""

    root: Path
    env: dict[str, str]
    run_id: str
    stdout: str
    stderr: str
    returncode: int


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory: pytest.TempPathFactory, nats_server: EmbeddedServer) -> Iterator[CompletedRun]:
    """Run a scatter workflow over two files with ``streamflow run``."""
    root = tmp_path_factory.mktemp("cli")
    env = _env(root, nats_server)
    _write(root, "tool.cwl", TOOL)
    _write(root, "wf.cwl", WORKFLOW)
    _write(root, "data/a.txt", "alpha\n")
    _write(root, "data/b.txt", "beta\n")
    _write(root, "job.yml", "texts:\n  - {class: File, location: data/a.txt}\n  - {class: File, location: data/b.txt}\n"
                            "times: 2\n")
    result = run_cli(["run", "--outdir", str(root / "out"), "wf.cwl", "job.yml"], env, cwd=root)
    match = re.search(r"run (\S+)", result.stderr)
    yield CompletedRun(root, env, match.group(1) if match else "", result.stdout, result.stderr, result.returncode)


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_run_prints_outputs_on_stdout_and_run_id_on_stderr(completed_run: CompletedRun) -> None:
    """``streamflow run`` exits 0, prints the output object as JSON on stdout and the run id on stderr."""
    assert completed_run.returncode == 0, completed_run.stderr
    assert re.fullmatch(r"[A-Za-z0-9_-]+", completed_run.run_id)
    outputs = json.loads(completed_run.stdout)
    shouts = outputs["shouts"]
    assert [f["basename"] for f in shouts] == ["shout.txt", "shout_2.txt"]
    assert [Path(f["path"]).read_text() for f in shouts] == ["ALPHA\n2\n", "BETA\n2\n"]
    assert all(Path(f["path"]).parent == completed_run.root / "out" for f in shouts)
    assert completed_run.run_id not in completed_run.stdout


def _events(run: CompletedRun, *args: str) -> list[dict[str, Any]]:
    result = run_cli(["events", run.run_id, "--json", *args], run.env, cwd=run.root)
    assert result.returncode == 0, result.stderr
    return _json_lines(result.stdout)


def test_events_json_lists_the_run_in_order(completed_run: CompletedRun) -> None:
    """``events RUN --json``: one object per event, seq 1..n, RunSubmitted first, RunCompleted last."""
    lines = _events(completed_run)
    assert [line["seq"] for line in lines] == list(range(1, len(lines) + 1))
    assert [line["stream_seq"] for line in lines] == sorted(line["stream_seq"] for line in lines)
    for line in lines:
        assert line["run_id"] == completed_run.run_id
        assert isinstance(line["type"], str) and isinstance(line["time"], float) and line["time"] > 0
    assert lines[0]["type"] == "RunSubmitted" and lines[-1]["type"] == "RunCompleted"
    submitted = lines[0]
    assert submitted["name"] == "wf" and submitted["workflow"] == str(completed_run.root / "wf.cwl")
    assert submitted["inputs"]["times"] == 2
    assert [f["basename"] for f in lines[-1]["outputs"]["shouts"]] == ["shout.txt", "shout_2.txt"]
    tokens = [line for line in lines if line["type"] == "TokenEmitted"]
    assert tokens and all("tag" in t and "value" in t for t in tokens)
    failures = [line for line in lines if line["type"] == "JobCompleted"]
    assert all(f["exit_code"] == 0 and f["attempt"] == 1 for f in failures)


def test_events_json_keeps_every_field_of_the_event(completed_run: CompletedRun) -> None:
    """Every field of the event body appears in its JSON line with its value (none shadowed)."""
    lines = _events(completed_run, "--type", "TokenEmitted")
    steps = set(_events(completed_run, "--type", "RunSubmitted")[0]["steps"])
    assert lines and all(line["producer"] in steps for line in lines)


def test_events_type_filter_keeps_only_that_type(completed_run: CompletedRun) -> None:
    """``--type JobCompleted`` prints only the JobCompleted events, with their run seq."""
    everything = _events(completed_run)
    completed = _events(completed_run, "--type", "JobCompleted")
    assert len(completed) == 2
    assert all(line["type"] == "JobCompleted" for line in completed)
    assert [line["seq"] for line in completed] == [e["seq"] for e in everything if e["type"] == "JobCompleted"]
    assert sorted(line["job"] for line in completed) == sorted(
        e["job"] for e in everything if e["type"] == "JobRequested")


def _list(env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    result = run_cli(["list", "--json"], env, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return _json_lines(result.stdout)


def test_list_and_status_json_show_the_completed_run(completed_run: CompletedRun) -> None:
    """``list --json`` has the run as COMPLETED; ``status --json`` agrees, with its jobs and steps."""
    runs = {r["run_id"]: r for r in _list(completed_run.env, completed_run.root)}
    listed = runs[completed_run.run_id]
    assert listed["status"] == "COMPLETED" and listed["name"] == "wf"
    assert listed["duration"] is not None and listed["duration"] >= 0
    result = run_cli(["status", completed_run.run_id, "--json"], completed_run.env, cwd=completed_run.root)
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["run_id"] == completed_run.run_id and status["status"] == "COMPLETED"
    assert status["steps"] == status["steps_terminated"] > 0
    assert status["jobs"] == {"requested": 2, "started": 2, "completed": 2, "reused": 0, "failed": 0,
                              "retried": 0, "rolled_back": 0, "abandoned": 0}
    assert status["events"] == len(_events(completed_run)) and status["error"] is None


def test_status_of_an_unknown_run_is_a_usage_error(completed_run: CompletedRun) -> None:
    """``status`` of a run that is not in the log exits 2 naming it."""
    result = run_cli(["status", "nosuchrun0", "--json"], completed_run.env, cwd=completed_run.root)
    assert result.returncode == 2
    assert "nosuchrun0" in result.stderr


def test_failing_workflow_exits_1_naming_the_step(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A workflow whose tool exits 1 makes ``streamflow run`` exit 1, naming the failed step."""
    _write(tmp_path, "fail.cwl", """\
        cwlVersion: v1.2
        class: Workflow
        inputs: {}
        outputs: {}
        steps:
          explode:
            run:
              class: CommandLineTool
              baseCommand: [sh, -c, 'exit 1']
              inputs: {}
              outputs: {}
            in: {}
            out: []
        """)
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), "fail.cwl"], sf_env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "explode" in result.stderr and "FAILED" in result.stderr
    assert result.stdout.strip() == ""


# --- invalid input: exit 2, a message naming the file/field, nothing in the log -----------------

BAD_CASES = {
    "malformed-yaml": ("tool.cwl", "cwlVersion: v1.2\nclass: CommandLineTool\ninputs: [unclosed\n", None,
                       ["tool.cwl"]),
    "string-for-an-int": ("tool.cwl", TOOL, "text: {class: File, location: data/a.txt}\ntimes: many\n",
                          ["times"]),
    "missing-input-file": ("tool.cwl", TOOL, "text: {class: File, location: data/nope.txt}\ntimes: 1\n",
                           ["nope.txt"]),
    "unknown-source": ("wf.cwl", WORKFLOW.replace("texts, times: times", "texts, times: timez"),
                       "texts: []\ntimes: 1\n", ["timez"]),
}  # fmt: skip

UNKNOWN_REQUIREMENT = TOOL.replace("baseCommand:", "requirements:\n  NoSuchRequirement: {}\nbaseCommand:")

UNSUPPORTED_CASES = {
    "docker-output-directory": TOOL.replace(
        "baseCommand:", "requirements:\n  DockerRequirement: {dockerPull: alpine, dockerOutputDirectory: out}\n"
        "baseCommand:"),
    "operation": """\
        cwlVersion: v1.2
        class: Operation
        inputs:
          text: File
          times: int
        outputs:
          shout: File
        """,
}


def _prepare_case(root: Path, doc: str, text: str, job: str | None) -> list[str]:
    _write(root, "tool.cwl", TOOL)
    _write(root, "data/a.txt", "alpha\n")
    _write(root, doc, text)
    args = ["run", "--outdir", str(root / "out"), doc]
    if job is not None:
        _write(root, "job.yml", job)
        args.append("job.yml")
    return args


@pytest.mark.parametrize("case", sorted(BAD_CASES))
async def test_invalid_input_exits_2_with_a_precise_message_and_records_nothing(
        case: str, tmp_path: Path, sf_env: dict[str, str], event_log: EventLog) -> None:
    """Malformed documents, ill-typed or missing inputs and unknown sources exit 2, name the culprit, log nothing."""
    doc, text, job, needles = BAD_CASES[case]
    args = _prepare_case(tmp_path, doc, text, job)
    before = set(await event_log.runs())
    result = run_cli(args, sf_env, cwd=tmp_path)
    assert result.returncode == 2, (result.stdout, result.stderr)
    for needle in needles:
        assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    assert set(await event_log.runs()) == before


@pytest.mark.parametrize("case", sorted(UNSUPPORTED_CASES))
async def test_unsupported_requirement_exits_33_and_records_nothing(case: str, tmp_path: Path,
                                                                   sf_env: dict[str, str],
                                                                   event_log: EventLog) -> None:
    """A requirement class CWL does not define, or an abstract Operation, exits 33 before anything is logged."""
    args = _prepare_case(tmp_path, "doc.cwl", UNSUPPORTED_CASES[case],
                         "text: {class: File, location: data/a.txt}\ntimes: 1\n")
    before = set(await event_log.runs())
    result = run_cli(args, sf_env, cwd=tmp_path)
    assert result.returncode == 33, (result.stdout, result.stderr)
    assert "unsupported" in result.stderr.lower()
    assert ("dockerOutputDirectory" if case == "docker-output-directory" else "Operation") in result.stderr
    assert set(await event_log.runs()) == before


def test_unknown_requirement_class_is_an_invalid_document(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A requirement class CWL v1.2 does not define makes the document invalid: exit 2, naming the field."""
    args = _prepare_case(tmp_path, "doc.cwl", UNKNOWN_REQUIREMENT,
                         "text: {class: File, location: data/a.txt}\ntimes: 1\n")
    result = run_cli(args, sf_env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "requirements" in result.stderr and "doc.cwl" in result.stderr


def test_bad_input_leaves_no_run_in_streamflow_list(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """After a rejected run, ``streamflow list --json`` shows exactly the runs it showed before."""
    args = _prepare_case(tmp_path, "tool.cwl", TOOL, "text: {class: File, location: data/a.txt}\ntimes: x\n")
    before = _list(sf_env, tmp_path)
    assert run_cli(args, sf_env, cwd=tmp_path).returncode == 2
    assert _list(sf_env, tmp_path) == before


def test_cwl_runner_entry_point_writes_outputs_to_outdir_quietly(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """``streamflow-cwl-runner --outdir D --quiet`` exits 0, prints only the output JSON, files in D."""
    _write(tmp_path, "tool.cwl", TOOL)
    _write(tmp_path, "data/a.txt", "alpha\n")
    _write(tmp_path, "job.yml", "text: {class: File, location: data/a.txt}\ntimes: 3\n")
    outdir = tmp_path / "results"
    result = run_cli(["--outdir", str(outdir), "--quiet", "tool.cwl", "job.yml"], sf_env, cwd=tmp_path,
                     entry="streamflow.cli.main:cwl_runner_main")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    shout = json.loads(result.stdout)["shout"]
    assert shout["basename"] == "shout.txt" and shout["size"] == 8
    assert Path(shout["path"]) == outdir / "shout.txt"
    assert (outdir / "shout.txt").read_text() == "ALPHA\n3\n"


def test_cwl_runner_exits_33_for_an_unsupported_requirement(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """The cwl-runner entry point follows the conformance convention: 33 for unsupported features."""
    args = _prepare_case(tmp_path, "doc.cwl", UNSUPPORTED_CASES["operation"],
                         "text: {class: File, location: data/a.txt}\ntimes: 1\n")
    result = run_cli(args[1:], sf_env, cwd=tmp_path, entry="streamflow.cli.main:cwl_runner_main")
    assert result.returncode == 33, result.stderr
