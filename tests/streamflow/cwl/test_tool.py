"""Running single tools: command lines, streams, environment, exit codes, time limits, outputs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.loader import LoadedDocument
from streamflow.cwl.tool import (
    check_requirements_supported,
    evaluate_resources,
    execute_process,
    local_run,
    prepare_job,
    resolve_requirements,
)
from streamflow.errors import JobFailedError, UnsupportedRequirementError

WriteTool = Callable[..., LoadedDocument]


async def _execute(doc: LoadedDocument, job: dict[str, Any], tmp_path: Path, **kwargs: Any) -> dict[str, Any]:
    reqs, hints = resolve_requirements(doc.process, [], [])
    inputs = fill_and_validate_inputs(
        doc.process, job, requirements=reqs, hints=hints, base_dir=str(tmp_path)
    )
    return await execute_process(
        doc.process,
        inputs,
        requirements=reqs,
        hints=hints,
        outdir=str(tmp_path / "out"),
        tmpdir=str(tmp_path / "tmp"),
        cwl_version=doc.cwl_version,
        **kwargs,
    )


def _command(doc: LoadedDocument, job: dict[str, Any], tmp_path: Path) -> list[str]:
    reqs, hints = resolve_requirements(doc.process, [], [])
    inputs = fill_and_validate_inputs(
        doc.process, job, requirements=reqs, hints=hints, base_dir=str(tmp_path)
    )
    prepared = prepare_job(
        doc.process,
        inputs,
        requirements=reqs,
        hints=hints,
        outdir=str(tmp_path / "o"),
        tmpdir=str(tmp_path / "t"),
    )
    return prepared.command


def test_command_line_bindings_are_sorted_and_rendered(write_tool: WriteTool, tmp_path: Path) -> None:
    """Positions, prefixes, separate, itemSeparator, booleans, nulls and valueFrom build the expected argv."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        requirements: {InlineJavascriptRequirement: {}}
        baseCommand: [tool, sub]
        arguments:
          - {valueFrom: "--first", position: -1}
          - "$(inputs.n * 1)"
        inputs:
          n: {type: int, inputBinding: {position: 2, prefix: -n}}
          flag: {type: boolean, inputBinding: {prefix: --flag}}
          off: {type: boolean, inputBinding: {prefix: --off}}
          missing: {type: string?, inputBinding: {prefix: --missing}}
          list: {type: "string[]", inputBinding: {prefix: -l=, separate: false, itemSeparator: ",", position: 1}}
          ratio: {type: float, inputBinding: {position: 3, valueFrom: "$(self * 2)"}}
          each:
            type: {type: array, items: int, inputBinding: {prefix: -e}}
            inputBinding: {position: 4}
        outputs: []
        """
    )
    job = {"n": 3, "flag": True, "off": False, "list": ["a", "b"], "ratio": 0.25, "each": [1, 2]}
    assert _command(doc, job, tmp_path) == [
        "tool",
        "sub",
        "--first",
        "3",
        "--flag",
        "-l=a,b",
        "-n",
        "3",
        "0.5",
        "-e",
        "1",
        "-e",
        "2",
    ]


def test_shell_command_quotes_all_but_unquoted_parts(write_tool: WriteTool, tmp_path: Path) -> None:
    """ShellCommandRequirement runs ``/bin/sh -c`` with shellQuote:false parts left verbatim."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        requirements: {ShellCommandRequirement: {}}
        arguments: [echo, "a b", {valueFrom: "> out.txt", shellQuote: false}]
        inputs: []
        outputs:
          out: {type: string, outputBinding: {glob: out.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
        """
    )
    assert _command(doc, {}, tmp_path) == ["/bin/sh", "-c", "echo 'a b' > out.txt"]


async def test_stdout_stderr_and_environment(write_tool: WriteTool, tmp_path: Path) -> None:
    """stdout/stderr outputs capture the streams; HOME/TMPDIR/PATH and EnvVarRequirement are set."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        requirements:
          EnvVarRequirement: {envDef: {GREETING: "hello $(inputs.who)"}}
          ShellCommandRequirement: {}
        arguments:
          - {valueFrom: 'echo "$GREETING" && echo "$HOME|$TMPDIR" 1>&2', shellQuote: false}
        inputs:
          who: string
        outputs:
          out: stdout
          err: stderr
        """
    )
    result = await _execute(doc, {"who": "world"}, tmp_path)
    assert Path(result["out"]["path"]).read_text() == "hello world\n"
    assert Path(result["err"]["path"]).read_text() == f"{tmp_path / 'out'}|{tmp_path / 'tmp'}\n"
    assert result["out"]["checksum"].startswith("sha1$")
    assert result["out"]["size"] == len("hello world\n")


async def test_glob_outputs_are_sorted_and_checksummed(write_tool: WriteTool, tmp_path: Path) -> None:
    """Glob matches are sorted, each File gets size and checksum, missing required output fails."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: touch
        arguments: [b.txt, a.txt]
        inputs: []
        outputs:
          files: {type: "File[]", outputBinding: {glob: "*.txt"}}
          none: {type: File?, outputBinding: {glob: "*.nothing"}}
        """
    )
    result = await _execute(doc, {}, tmp_path)
    assert [f["basename"] for f in result["files"]] == ["a.txt", "b.txt"]
    assert all(f["checksum"] == "sha1$da39a3ee5e6b4b0d3255bfef95601890afd80709" for f in result["files"])
    assert result["none"] is None


async def test_missing_required_output_fails(write_tool: WriteTool, tmp_path: Path) -> None:
    """A required output that the tool did not produce is a job failure."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: "true"
        inputs: []
        outputs:
          out: {type: File, outputBinding: {glob: result.txt}}
        """
    )
    with pytest.raises(JobFailedError, match="output 'out': missing required value"):
        await _execute(doc, {}, tmp_path)


@pytest.mark.parametrize(("code", "retryable"), [(3, True), (4, False), (1, True)])
async def test_exit_codes_map_to_retryable_failures(
    write_tool: WriteTool, tmp_path: Path, code: int, retryable: bool
) -> None:
    """Only permanentFailCodes give non-retryable failures; the failure manager decides for the others."""
    doc = write_tool(
        f"""\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, "exit {code}"]
        temporaryFailCodes: [3]
        permanentFailCodes: [4]
        inputs: []
        outputs: []
        """
    )
    with pytest.raises(JobFailedError) as info:
        await _execute(doc, {}, tmp_path)
    assert info.value.exit_code == code
    assert info.value.retryable is retryable


async def test_success_codes_accept_nonzero_exit(write_tool: WriteTool, tmp_path: Path) -> None:
    """An exit code listed in successCodes is a success, and runtime.exitCode is visible to outputEval."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, "exit 7"]
        successCodes: [7]
        inputs: []
        outputs:
          code: {type: int, outputBinding: {outputEval: $(runtime.exitCode)}}
        """
    )
    assert await _execute(doc, {}, tmp_path) == {"code": 7}


async def test_local_run_kills_the_process_group_on_timeout(tmp_path: Path) -> None:
    """A command exceeding its time limit is killed (with its children) and fails permanently."""
    marker = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(JobFailedError, match=r"time limit of 0\.5 seconds") as info:
        await local_run(
            ["/bin/sh", "-c", f"sleep 30 & echo $! > {marker}; wait"],
            environment={"PATH": os.environ["PATH"]},
            workdir=str(tmp_path),
            timeout=0.5,
        )
    assert time.monotonic() - start < 10
    assert not info.value.retryable
    child = int(marker.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the child process survived the timeout")


async def test_expression_tool_outputs_are_validated(write_tool: WriteTool, tmp_path: Path) -> None:
    """ExpressionTool results are checked against the output types."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: ExpressionTool
        requirements: {InlineJavascriptRequirement: {}}
        inputs: {x: int}
        expression: "${ return {'y': inputs.x + 1, 'z': 'not an int'}; }"
        outputs: {y: int, z: int}
        """
    )
    with pytest.raises(JobFailedError, match="output 'z': expected int, got string 'not an int'"):
        await _execute(doc, {"x": 1}, tmp_path)


async def test_initial_workdir_stages_files_and_literals(
    write_tool: WriteTool, tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """InitialWorkDir entries appear in the output directory and inputs point at the staged copy."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        requirements:
          InlineJavascriptRequirement: {}
          InitialWorkDirRequirement:
            listing:
              - $(inputs.f)
              - {entryname: config.json, entry: "$({'n': inputs.n})"}
              - {entryname: copy.txt, entry: $(inputs.f), writable: true}
        baseCommand: [cat]
        arguments: [$(inputs.f.path), config.json]
        inputs: {f: File, n: int}
        stdout: out.txt
        outputs:
          out: {type: string, outputBinding: {glob: out.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
        """
    )
    f = write_file(tmp_path / "data.txt", "data;")
    result = await _execute(doc, {"f": f, "n": 2}, tmp_path)
    assert result == {"out": 'data;{"n": 2}'}
    assert (tmp_path / "out" / "data.txt").is_symlink()
    assert not (tmp_path / "out" / "copy.txt").is_symlink()


def test_requirements_override_by_class_and_unknown_ones_are_unsupported(write_tool: WriteTool) -> None:
    """A process's own requirement overrides an inherited one; unknown requirements raise, hints do not."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        $namespaces: {ex: "http://example.com/"}
        requirements: {ToolTimeLimit: {timelimit: 5}}
        hints: [{class: "ex:Unknown"}]
        baseCommand: "true"
        inputs: []
        outputs: []
        """
    )
    reqs, _ = resolve_requirements(
        doc.process,
        [{"class": "ToolTimeLimit", "timelimit": 60}, {"class": "EnvVarRequirement", "envDef": []}],
        [],
    )
    assert {r["class"]: r.get("timelimit") for r in reqs} == {"ToolTimeLimit": 5, "EnvVarRequirement": None}
    check_requirements_supported(doc.process, reqs)
    with pytest.raises(UnsupportedRequirementError, match="unsupported requirement 'FancyRequirement'"):
        check_requirements_supported(doc.process, [*reqs, {"class": "FancyRequirement"}])


async def test_operation_is_unsupported(write_tool: WriteTool, tmp_path: Path) -> None:
    """An Operation cannot be executed."""
    doc = write_tool("cwlVersion: v1.2\nclass: Operation\ninputs: []\noutputs: []\n")
    with pytest.raises(UnsupportedRequirementError):
        await _execute(doc, {}, tmp_path)


def test_resources_are_evaluated_with_expressions(write_tool: WriteTool) -> None:
    """ResourceRequirement minimums (expressions allowed) are rounded up; absent ones use the defaults."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        requirements:
          InlineJavascriptRequirement: {}
          ResourceRequirement: {coresMin: 1.5, ramMin: "$(inputs.n * 100)"}
        baseCommand: "true"
        inputs: {n: int}
        outputs: []
        """
    )
    reqs, hints = resolve_requirements(doc.process, [], [])
    resources = evaluate_resources(doc.process, {"n": 3}, requirements=reqs, hints=hints)
    assert resources == {"cores": 2, "ram": 300, "outdirSize": 1024, "tmpdirSize": 1024}
