"""In-process runs of small CWL workflows through the engine, against the session's real nats-server.

Every run goes through :func:`streamflow.cli.engine.prepare` and ``submit_and_run`` (or
``execute_run``), then its log is read back with :meth:`EventLog.read` and checked: outputs,
each job run exactly once (counter files written by the tools *outside* their job
directories), termination of every step and port, ordered subsequences of events, and the
:class:`RunSummary` projection.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

from actors.failure_manager import RetrySettings
from events.codec import event_type
from events.log import EventLog, Record
from events.projections import RunSummary
from events.schema import (
    DataLocationsRegistered,
    JobAbandoned,
    JobCompleted,
    JobFailed,
    JobRetryScheduled,
    JobStarted,
    PortTerminated,
    RunCompleted,
    RunFailed,
    StepFailed,
    StepTerminated,
)
from streamflow.bus import BusOptions
from streamflow.cli.engine import PreparedRun, RunOptions, RunResult, execute_run, prepare, submit_and_run

RUN_DEADLINE = 60.0

# --- tools -------------------------------------------------------------------------------
# Each tool appends a line to <counter>/<key> (outside its job directory) every time it runs.

ECHO = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo ran >> "$0/$1" && printf "%s" "$1"']
inputs:
  counter: {type: string, inputBinding: {position: 1}}
  msg: {type: string, inputBinding: {position: 2}}
stdout: msg.txt
outputs:
  out:
    type: string
    outputBinding: {glob: msg.txt, loadContents: true, outputEval: "$(self[0].contents)"}
"""

UPPER = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo ran >> "$0/`basename "$1"`" && tr a-z A-Z < "$1"']
inputs:
  counter: {type: string, inputBinding: {position: 1}}
  file: {type: File, inputBinding: {position: 2}}
stdout: $(inputs.file.nameroot).up
outputs:
  out: stdout
"""

PAIR = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo ran >> "$0/`basename "$1" .txt`-$2" && cat "$1" && echo "$2"']
inputs:
  counter: {type: string, inputBinding: {position: 1}}
  file: {type: File, inputBinding: {position: 2}}
  word: {type: string, inputBinding: {position: 3}}
stdout: $(inputs.file.nameroot)-$(inputs.word).txt
outputs:
  out: stdout
"""

# Fails with exit code `code` the first `failures` times it runs (counted in `state`).
FLAKY = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'n=`cat "$0" 2>/dev/null || echo 0`; n=`expr $n + 1`; echo $n > "$0"; if [ $n -le $1 ]; then exit $2; fi; printf ok']
temporaryFailCodes: [75]
inputs:
  state: {type: string, inputBinding: {position: 1}}
  failures: {type: int, inputBinding: {position: 2}}
  code: {type: int, inputBinding: {position: 3}}
stdout: out.txt
outputs:
  out:
    type: string
    outputBinding: {glob: out.txt, loadContents: true, outputEval: "$(self[0].contents)"}
"""

SCATTER_WF = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {{}}
inputs:
  counter: string
  files: File[]
  words: string[]
outputs:
  out:
    type: {out_type}
    outputSource: pair/out
steps:
  pair:
    run: pair.cwl
    scatter: [file, word]
    scatterMethod: {method}
    in:
      counter: counter
      file: files
      word: words
    out: [out]
"""


# --- helpers -----------------------------------------------------------------------------


class Workspace:
    """A directory with CWL documents, data files, a counter directory and the run's dirs."""

    def __init__(self, root: Path, bus: BusOptions, log: EventLog) -> None:
        self.root = root
        self.bus = bus
        self.log = log
        self.counter = root / "counter"
        self.counter.mkdir()
        for name, text in (("echo.cwl", ECHO), ("upper.cwl", UPPER), ("pair.cwl", PAIR), ("flaky.cwl", FLAKY)):
            self.write(name, text)

    def write(self, name: str, text: str) -> Path:
        """Write a document (dedented) into the workspace."""
        path = self.root / name
        path.write_text(textwrap.dedent(text))
        return path

    def data(self, name: str, content: str) -> dict[str, Any]:
        """Write a data file; return its File object for a job document."""
        path = self.root / "data" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
        return {"class": "File", "location": str(path)}

    def job(self, inputs: dict[str, Any]) -> Path:
        """Write a job document (JSON is YAML); the counter dir is always given."""
        import json

        path = self.root / "job.json"
        path.write_text(json.dumps({"counter": str(self.counter), **inputs}))
        return path

    def runs_of(self, key: str) -> int:
        """How many times the job writing counter ``key`` ran."""
        path = self.counter / key
        return len(path.read_text().splitlines()) if path.exists() else 0

    def counts(self) -> dict[str, int]:
        """Counter key -> runs, for every job that ran."""
        return {p.name: self.runs_of(p.name) for p in sorted(self.counter.iterdir())}

    async def run(self, doc: str, inputs: dict[str, Any], *, retry: RetrySettings | None = None,
                  ) -> tuple[RunResult, PreparedRun, list[Record]]:
        """Prepare and run a document to its end; return the result, the graph and the run's log."""
        workflow = str(self.root / doc)
        job = str(self.job(inputs))
        prepared = prepare(workflow, job)
        options = RunOptions(workflow=workflow, job=job, bus=self.bus, workdir=str(self.root / "work"),
                             outdir=str(self.root / "out"), retry=retry or RetrySettings())
        async with asyncio.timeout(RUN_DEADLINE):
            result = await submit_and_run(options, prepared)
            records = [r async for r in self.log.read(result.run_id)]
        return result, prepared, records


@pytest.fixture
def ws(tmp_path: Path, bus_options: BusOptions, event_log: EventLog) -> Workspace:
    """A fresh workspace on the session's bus."""
    return Workspace(tmp_path, bus_options, event_log)


def types(records: Iterable[Record]) -> list[str]:
    """The event types of records, in order."""
    return [event_type(r.body) for r in records]


def assert_subsequence(actual: Sequence[Any], expected: Sequence[Any]) -> None:
    """``expected`` occurs in ``actual`` in order (not necessarily contiguously)."""
    it = iter(actual)
    for position, item in enumerate(expected):
        if not any(a == item for a in it):
            raise AssertionError(f"{item!r} (#{position} of {list(expected)!r}) not found in order in {list(actual)!r}")


def assert_terminated(records: list[Record], prepared: PreparedRun) -> None:
    """Every step has exactly one StepTerminated and every port exactly one PortTerminated."""
    graph = prepared.graph
    steps = [r.agg_id for r in records if isinstance(r.body, StepTerminated)]
    ports = [r.agg_id for r in records if isinstance(r.body, PortTerminated)]
    assert sorted(steps) == sorted(graph.steps), "every step terminates exactly once"
    assert sorted(ports) == sorted(graph.ports), "every port terminates exactly once"
    first_terminated = {}
    for r in records:
        if isinstance(r.body, PortTerminated):
            first_terminated.setdefault(r.agg_id, r.stream_seq)
    for r in records:  # nothing is emitted on a port after it terminated
        if r.aggregate == "port" and r.agg_id in first_terminated:
            assert r.stream_seq <= first_terminated[r.agg_id] or not isinstance(r.body, PortTerminated)


def summarize(records: list[Record]) -> RunSummary:
    """Fold the RunSummary projection over a run's records."""
    summary = RunSummary(run_id=records[0].envelope.run_id)
    for record in records:
        summary.apply(record)
    return summary


def assert_completed(result: RunResult, records: list[Record], prepared: PreparedRun, *, jobs: int) -> RunSummary:
    """The run completed, fully terminated, with ``jobs`` jobs, and its summary agrees with the log."""
    assert result.status == "COMPLETED", result.error
    # the run's creation, then one fence per actor group (the full host holds them all), then RunStarted
    assert types(records)[:8] == ["RunSubmitted", *["LeaseTaken"] * 6, "RunStarted"]
    assert types(records)[-1] == "RunCompleted"
    assert isinstance(records[-1].body, RunCompleted) and records[-1].body.outputs == result.outputs
    assert_terminated(records, prepared)
    completed = {r.body.job for r in records if isinstance(r.body, JobCompleted)}
    registered = {r.body.job for r in records if isinstance(r.body, DataLocationsRegistered)}
    assert registered == completed, "the DataManager registers the outputs of every completed job"
    summary = summarize(records)
    assert summary.status == "COMPLETED"
    assert summary.outputs == result.outputs
    assert summary.steps_terminated == set(prepared.graph.steps)
    assert len(summary.steps) == len(prepared.graph.steps)
    assert (summary.jobs_requested, summary.jobs_started, summary.jobs_completed) == (jobs, jobs, jobs)
    assert (summary.jobs_failed, summary.jobs_retried, summary.jobs_abandoned) == (0, 0, 0)
    assert summary.tokens == sum(1 for r in records if event_type(r.body) == "TokenEmitted")
    assert summary.events == len(records) and summary.last_seq == records[-1].stream_seq
    assert summary.error is None and summary.duration is not None
    return summary


def file_names(value: Any) -> Any:
    """The basenames of (nested lists of) File objects."""
    if isinstance(value, list):
        return [file_names(v) for v in value]
    return value["basename"]


def contents(value: Any) -> Any:
    """The contents of (nested lists of) delivered File objects."""
    if isinstance(value, list):
        return [contents(v) for v in value]
    return Path(value["path"]).read_text()


# --- tests -------------------------------------------------------------------------------


async def test_single_tool_runs_once_and_delivers_its_output(ws: Workspace) -> None:
    """A lone CommandLineTool runs as exactly one job and its output is the run's output."""
    result, prepared, records = await ws.run("echo.cwl", {"msg": "hello"})
    assert result.outputs == {"out": "hello"}
    assert ws.counts() == {"hello": 1}
    assert_completed(result, records, prepared, jobs=1)
    assert_subsequence(types(records), ["RunSubmitted", "RunStarted", "JobRequested", "JobScheduled",
                                        "InputsStaged", "JobStarted", "JobCompleted", "DataLocationsRegistered",
                                        "RunCompleted"])


async def test_tool_with_file_input_delivers_file_to_outdir(ws: Workspace) -> None:
    """A File output is delivered into the outdir with basename, size and sha1 checksum."""
    text = ws.data("greeting.txt", "hello world\n")
    result, prepared, records = await ws.run("upper.cwl", {"file": text})
    out = result.outputs["out"]  # type: ignore[index]
    assert out["basename"] == "greeting.up" and out["size"] == 12
    assert out["checksum"].startswith("sha1$")
    assert Path(out["path"]).parent == ws.root / "out"
    assert Path(out["path"]).read_text() == "HELLO WORLD\n"
    assert ws.counts() == {"greeting.txt": 1}
    assert_completed(result, records, prepared, jobs=1)


@pytest.mark.parametrize(("method", "files", "words", "expected"), [
    pytest.param("dotproduct", ["a", "b", "c"], ["x", "y", "z"], ["a-x", "b-y", "c-z"], id="dotproduct"),
    pytest.param("nested_crossproduct", ["a", "b"], ["x", "y", "z"],
                 [["a-x", "a-y", "a-z"], ["b-x", "b-y", "b-z"]], id="nested_crossproduct"),
    pytest.param("flat_crossproduct", ["a", "b"], ["x", "y", "z"],
                 ["a-x", "a-y", "a-z", "b-x", "b-y", "b-z"], id="flat_crossproduct"),
    pytest.param("dotproduct", [], [], [], id="empty-dotproduct"),
    pytest.param("nested_crossproduct", ["a", "b"], [], [[], []], id="nested-with-empty-inner"),
    pytest.param("flat_crossproduct", [], ["x"], [], id="flat-with-empty-outer"),
])  # fmt: skip
async def test_scatter_over_files_runs_each_combination_once(ws: Workspace, method: str, files: list[str],
                                                             words: list[str], expected: Any) -> None:
    """Scatter methods produce the right shape and order of outputs, one job per combination."""
    nested = method == "nested_crossproduct"
    ws.write("wf.cwl", SCATTER_WF.format(method=method,
                                         out_type="{type: array, items: {type: array, items: File}}" if nested
                                         else "File[]"))
    inputs = {"files": [ws.data(f"{name}.txt", f"<{name}>\n") for name in files], "words": words}
    result, prepared, records = await ws.run("wf.cwl", inputs)
    out = result.outputs["out"]  # type: ignore[index]

    def with_ext(value: Any) -> Any:
        return [with_ext(v) for v in value] if isinstance(value, list) else f"{value}.txt"

    assert file_names(out) == with_ext(expected)
    flat = [n for row in expected for n in row] if nested else expected
    assert ws.counts() == {name: 1 for name in flat}
    for name, text in zip(flat, [c for row in contents(out) for c in row] if nested else contents(out),
                          strict=True):
        f, w = name.split("-")
        assert text == f"<{f}>\n{w}\n"
    assert_completed(result, records, prepared, jobs=len(flat))


async def test_subworkflow_runs_its_steps_in_order(ws: Workspace) -> None:
    """A step running an inline Workflow executes its inner steps and exposes their outputs."""
    ws.write("wf.cwl", """\
        cwlVersion: v1.2
        class: Workflow
        requirements:
          SubworkflowFeatureRequirement: {}
        inputs:
          counter: string
          file: File
          word: string
        outputs:
          result:
            type: File
            outputSource: inner/paired
        steps:
          inner:
            run:
              class: Workflow
              inputs:
                counter: string
                file: File
                word: string
              outputs:
                paired:
                  type: File
                  outputSource: pair/out
              steps:
                upper:
                  run: upper.cwl
                  in: {counter: counter, file: file}
                  out: [out]
                pair:
                  run: pair.cwl
                  in: {counter: counter, file: upper/out, word: word}
                  out: [out]
            in: {counter: counter, file: file, word: word}
            out: [paired]
        """)
    result, prepared, records = await ws.run("wf.cwl", {"file": ws.data("doc.txt", "abc\n"), "word": "w"})
    out = result.outputs["result"]  # type: ignore[index]
    assert out["basename"] == "doc-w.txt"
    assert Path(out["path"]).read_text() == "ABC\nw\n"
    assert ws.counts() == {"doc.txt": 1, "doc.up-w": 1}
    assert_completed(result, records, prepared, jobs=2)
    done = [r.body.job for r in records if isinstance(r.body, JobCompleted)]
    assert len(done) == 2 and done[0] != done[1]


WHEN_WF = """\
cwlVersion: v1.2
class: Workflow
requirements:
  InlineJavascriptRequirement: {}
  MultipleInputFeatureRequirement: {}
inputs:
  counter: string
  n: int
outputs:
  verdict:
    type: string
    outputSource: [big/out, small/out]
    pickValue: the_only_non_null
  first:
    type: string
    outputSource: [small/out, big/out]
    pickValue: first_non_null
  all:
    type: string[]
    outputSource: [big/out, small/out]
    pickValue: all_non_null
  skipped:
    type: string?
    outputSource: small/out
steps:
  big:
    run: echo.cwl
    when: $(inputs.n > 5)
    in:
      counter: counter
      n: n
      msg: {default: big}
    out: [out]
  small:
    run: echo.cwl
    when: $(inputs.n <= 5)
    in:
      counter: counter
      n: n
      msg: {default: small}
    out: [out]
"""


@pytest.mark.parametrize(("n", "ran", "other"), [(7, "big", "small"), (3, "small", "big")])
async def test_when_skips_a_step_and_pick_value_selects_the_branch_taken(ws: Workspace, n: int, ran: str,
                                                                          other: str) -> None:
    """Only the branch whose ``when`` holds runs; pickValue picks its value and the skipped step gives null."""
    ws.write("wf.cwl", WHEN_WF)
    result, prepared, records = await ws.run("wf.cwl", {"n": n})
    assert result.outputs == {"verdict": ran, "first": ran, "all": [ran],
                              "skipped": "small" if ran == "small" else None}
    assert ws.counts() == {ran: 1}
    assert ws.runs_of(other) == 0
    assert_completed(result, records, prepared, jobs=1)


async def test_value_from_transforms_step_inputs(ws: Workspace) -> None:
    """``valueFrom`` rewrites a sourced input (self) and builds one from the other inputs."""
    ws.write("wf.cwl", """\
        cwlVersion: v1.2
        class: Workflow
        requirements:
          InlineJavascriptRequirement: {}
          StepInputExpressionRequirement: {}
        inputs:
          counter: string
          word: string
          times: int
        outputs:
          shout:
            type: string
            outputSource: echo/out
        steps:
          echo:
            run: echo.cwl
            in:
              counter: counter
              word: word
              times: times
              msg:
                source: word
                valueFrom: $(self.toUpperCase() + "!".repeat(inputs.times))
            out: [out]
        """)
    result, prepared, records = await ws.run("wf.cwl", {"word": "hey", "times": 3})
    assert result.outputs == {"shout": "HEY!!!"}
    assert ws.counts() == {"HEY!!!": 1}
    assert_completed(result, records, prepared, jobs=1)


# A hang seen about once in 15-30 runs after a FAILED in-process run: the test's own read of the log
# blocks inside nats-py (which swallows the deadline's cancellation). Fail fast instead of at 300 s.
@pytest.mark.timeout(60)
async def test_failing_tool_fails_the_run_naming_the_step(ws: Workspace) -> None:
    """A tool exiting 1 fails its step and the run; the error and RunFailed name the step."""
    ws.write("fail.cwl", """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, 'echo failing >&2; exit 1']
        inputs: {}
        outputs: {}
        """)
    ws.write("wf.cwl", """\
        cwlVersion: v1.2
        class: Workflow
        inputs:
          counter: string
        outputs:
          out: {type: string, outputSource: after/out}
        steps:
          boom:
            run: fail.cwl
            in: {}
            out: []
          after:
            run: echo.cwl
            in: {counter: counter, msg: {default: after}}
            out: [out]
        """)
    result, prepared, records = await ws.run("wf.cwl", {})
    assert result.status == "FAILED"
    assert "boom" in (result.error or "")
    finals = [r.body for r in records if isinstance(r.body, RunFailed | RunCompleted)]
    assert len(finals) == 1
    final = finals[0]
    assert isinstance(final, RunFailed) and final.step is not None and "boom" in final.step
    boom = next(s.id for s in prepared.graph.steps.values() if s.name.endswith("/boom"))
    failed = [r for r in records if isinstance(r.body, StepFailed)]
    assert [r.agg_id for r in failed] == [boom]
    terminated = [r.body for r in records if isinstance(r.body, StepTerminated) and r.agg_id == boom]
    assert [t.status for t in terminated] == ["FAILED"]
    job_failed = [r.body for r in records if isinstance(r.body, JobFailed)]
    assert len(job_failed) == 1 and job_failed[0].exit_code == 1
    assert_subsequence(types(records), ["JobStarted", "JobFailed", "JobAbandoned", "StepFailed", "RunFailed"])
    summary = summarize(records)
    assert summary.status == "FAILED" and summary.failed_step == final.step
    assert (summary.jobs_failed, summary.jobs_abandoned, summary.jobs_retried) == (1, 1, 0)


def _job_history(records: list[Record]) -> list[tuple[str, int]]:
    """(event type, attempt) of the job and recovery events, in log order."""
    history = []
    for r in records:
        body = r.body
        if isinstance(body, JobStarted | JobCompleted | JobFailed | JobRetryScheduled):
            history.append((event_type(body), body.attempt))
        elif isinstance(body, JobAbandoned):
            history.append((event_type(body), body.attempts))
    return history


async def test_retries_rerun_a_failing_job_until_it_completes(ws: Workspace) -> None:
    """A job failing twice (temporary failure code) completes on attempt 3 with max_retries=2, in order."""
    state = ws.root / "flaky-state"
    result, prepared, records = await ws.run("flaky.cwl", {"state": str(state), "failures": 2, "code": 75},
                                             retry=RetrySettings(max_retries=2))
    assert result.status == "COMPLETED", result.error
    assert result.outputs == {"out": "ok"}
    assert state.read_text().strip() == "3"
    history = _job_history(records)
    assert history == [("JobStarted", 1), ("JobFailed", 1), ("JobRetryScheduled", 2), ("JobStarted", 2),
                       ("JobFailed", 2), ("JobRetryScheduled", 3), ("JobStarted", 3), ("JobCompleted", 3)]
    assert_subsequence(types(records), ["JobFailed", "JobRetryScheduled", "JobStarted", "JobCompleted",
                                        "RunCompleted"])
    started = [r.body for r in records if isinstance(r.body, JobStarted)]
    assert len({s.workdir for s in started}) == 3, "every attempt runs in a fresh directory"
    assert_terminated(records, prepared)
    summary = summarize(records)
    assert summary.status == "COMPLETED"
    assert (summary.jobs_requested, summary.jobs_started, summary.jobs_failed, summary.jobs_retried,
            summary.jobs_completed, summary.jobs_abandoned) == (1, 3, 2, 2, 1, 0)


@pytest.mark.timeout(60)  # see test_failing_tool_fails_the_run_naming_the_step
async def test_retries_exhausted_abandon_the_job_and_fail_the_run(ws: Workspace) -> None:
    """With max_retries=1 a job failing twice is abandoned after 2 attempts and the run fails."""
    state = ws.root / "flaky-state"
    result, _prepared, records = await ws.run("flaky.cwl", {"state": str(state), "failures": 2, "code": 75},
                                              retry=RetrySettings(max_retries=1))
    assert result.status == "FAILED"
    assert state.read_text().strip() == "2"
    assert _job_history(records) == [("JobStarted", 1), ("JobFailed", 1), ("JobRetryScheduled", 2),
                                     ("JobStarted", 2), ("JobFailed", 2), ("JobAbandoned", 2)]
    summary = summarize(records)
    assert (summary.status, summary.jobs_failed, summary.jobs_retried, summary.jobs_abandoned) == ("FAILED", 2, 1, 1)


@pytest.mark.timeout(60)  # see test_failing_tool_fails_the_run_naming_the_step
async def test_retries_apply_to_an_ordinary_nonzero_exit_code(ws: Workspace) -> None:
    """A job exiting 1 once (no temporaryFailCodes) is retried under max_retries=1 and completes."""
    state = ws.root / "flaky-state"
    result, _prepared, records = await ws.run("flaky.cwl", {"state": str(state), "failures": 1, "code": 1},
                                              retry=RetrySettings(max_retries=1))
    assert result.status == "COMPLETED", result.error
    assert_subsequence(_job_history(records), [("JobFailed", 1), ("JobRetryScheduled", 2), ("JobStarted", 2),
                                               ("JobCompleted", 2)])


async def test_executing_a_completed_run_again_replays_without_rerunning_jobs(ws: Workspace) -> None:
    """execute_run on a run whose end is in the log replays it: same outputs, no job runs again, no new events."""
    inputs = {"files": [ws.data(f"{n}.txt", n) for n in "ab"], "words": ["x", "y"]}
    ws.write("wf.cwl", SCATTER_WF.format(method="dotproduct", out_type="File[]"))
    result, prepared, records = await ws.run("wf.cwl", inputs)
    assert ws.counts() == {"a-x": 1, "b-y": 1}
    async with asyncio.timeout(RUN_DEADLINE):
        again = await execute_run(ws.log, result.run_id, prepared.graph, outdir=str(ws.root / "out"),
                                  workdir=str(ws.root / "work"), workers=1, retry=RetrySettings())
        after = [r async for r in ws.log.read(result.run_id)]
    assert again.status == "COMPLETED" and again.outputs == result.outputs
    assert ws.counts() == {"a-x": 1, "b-y": 1}
    assert len(after) == len(records)
