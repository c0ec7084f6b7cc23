"""The per-job shortcuts of the tool layer give what the long way gives (issue 13, worker):
plain parameter references walked without cwl-utils, one read for ``loadContents`` and the
checksum, symbolic links in outputs still resolved, the tool's context reused per tool."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cwl_utils.expression import evaluator as cwl_evaluator

from streamflow.cwl import tool as toolmod
from streamflow.cwl.expression import ExpressionEvaluator, _reference
from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.loader import LoadedDocument
from streamflow.cwl.tool import execute_process, resolve_requirements
from streamflow.errors import JobFailedError

WriteTool = Callable[..., LoadedDocument]

ROOT: dict[str, Any] = {
    "inputs": {"x": "a", "n": 0, "l": [1, {"k": [True]}], "f": {"class": "File", "path": "/p/f.txt", "size": 3},
               "e": [], "length": {"length": 7}, "none": None},
    "self": [{"contents": "hello"}],
    "runtime": {"outdir": "/o", "cores": 2},
}


@pytest.mark.parametrize("text", [
    "(inputs.x)", "(inputs.n)", "(inputs.l[1].k[0])", "(inputs.l.length)", "(inputs.f.path)", "(inputs.f)",
    "(inputs.length.length)", "(inputs.none)", "(self[0].contents)", "(self)", "(runtime.cores)", "(inputs)",
])
def test_plain_references_equal_cwl_utils(text: str) -> None:
    assert _reference(text) is not None
    ours = ExpressionEvaluator([], "v1.2")._one(text, ROOT, None)  # type: ignore[arg-type]
    assert ours == cwl_evaluator(None, text, ROOT, "", False)  # type: ignore[arg-type]


@pytest.mark.parametrize("expr", [
    "$(inputs.nope)", "$(inputs.l[9])", "$(inputs.x.y)", "$(inputs.l.length.x)", "$(inputs.x[0])",
    "$(inputs.e[0])", "$(self[1])",
])
def test_references_that_fail_fail_as_before(expr: str) -> None:
    """Errors come from cwl-utils itself (its messages), whichever the path."""
    with pytest.raises((JobFailedError, IndexError)) as ours:
        ExpressionEvaluator([], "v1.2").evaluate(expr, ROOT["inputs"], self_=ROOT["self"])
    try:
        cwl_evaluator(None, expr[1:], ROOT, "", False)  # type: ignore[arg-type]
    except Exception as theirs:  # compare whatever it raises
        assert str(theirs) in str(ours.value)
    else:
        pytest.fail("cwl-utils accepted what the fast path refused")


def test_other_references_are_not_taken_by_the_fast_path() -> None:
    for text in ("(inputs['x'])", '(inputs["x"])', "(inputs.x + 1)", "{return 1;}", "(foo.x)", "(null)"):
        assert _reference(text) is None


async def _run(doc: LoadedDocument, job: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    reqs, hints = resolve_requirements(doc.process, [], [])
    inputs = fill_and_validate_inputs(doc.process, job, requirements=reqs, hints=hints, base_dir=str(tmp_path))
    return await execute_process(doc.process, inputs, requirements=reqs, hints=hints, outdir=str(tmp_path / "out"),
                                 tmpdir=str(tmp_path / "tmp"), cwl_version=doc.cwl_version)


async def test_load_contents_and_checksum_from_one_read(write_tool: WriteTool, tmp_path: Path) -> None:
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c]
        arguments: ["printf 'one two' > a.txt; head -c 70000 /dev/zero > big.bin"]
        inputs: []
        outputs:
          a: {type: File, outputBinding: {glob: a.txt, loadContents: true}}
          text: {type: string, outputBinding: {glob: a.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
          big: {type: File, outputBinding: {glob: big.bin}}
        """
    )
    result = await _run(doc, {}, tmp_path)
    assert result["a"]["contents"] == "one two" and result["text"] == "one two"
    assert result["a"]["checksum"] == "sha1$" + hashlib.sha1(b"one two").hexdigest()
    assert result["big"]["checksum"] == "sha1$" + hashlib.sha1(b"\0" * 70000).hexdigest()
    assert "contents" not in result["big"]
    too_big = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, "head -c 70000 /dev/zero > big.bin"]
        inputs: []
        outputs:
          big: {type: File, outputBinding: {glob: big.bin, loadContents: true}}
        """
    )
    with pytest.raises(JobFailedError, match="larger than the 64 KiB limit"):
        await _run(too_big, {}, tmp_path / "2")


async def test_links_in_outputs_are_still_resolved(write_tool: WriteTool, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    leak = write_tool(
        f"""\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, "mkdir d && ln -s {outside} d/x.txt && ln -s {tmp_path} up"]
        inputs: []
        outputs:
          x: {{type: File, outputBinding: {{glob: d/x.txt}}}}
        """
    )
    with pytest.raises(JobFailedError, match="symbolic link"):
        await _run(leak, {}, tmp_path / "1")
    through = write_tool(
        f"""\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, "ln -s {tmp_path} up"]
        inputs: []
        outputs:
          x: {{type: File, outputBinding: {{glob: up/secret.txt}}}}
        """
    )
    with pytest.raises(JobFailedError, match="symbolic link"):
        await _run(through, {}, tmp_path / "2")
    inside = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: [sh, -c, "echo hi > real.txt && ln -s real.txt link.txt"]
        inputs: []
        outputs:
          x: {type: File, outputBinding: {glob: link.txt, loadContents: true}}
        """
    )
    assert (await _run(inside, {}, tmp_path / "3"))["x"]["contents"] == "hi\n"


async def test_the_tool_context_is_shared_by_its_jobs(write_tool: WriteTool, tmp_path: Path) -> None:
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: echo
        stdout: out.txt
        inputs:
          x: {type: string, inputBinding: {position: 1}}
        outputs:
          out: {type: string, outputBinding: {glob: out.txt, loadContents: true, outputEval: "$(self[0].contents)"}}
        """
    )
    reqs, hints = resolve_requirements(doc.process, [], [])
    results = []
    for i in range(3):
        inputs = fill_and_validate_inputs(doc.process, {"x": f"v{i}"}, requirements=reqs, hints=hints,
                                          base_dir=str(tmp_path))
        results.append(await execute_process(doc.process, inputs, requirements=reqs, hints=hints,
                                             outdir=str(tmp_path / f"o{i}"), tmpdir=str(tmp_path / f"t{i}")))
    assert [r["out"] for r in results] == ["v0\n", "v1\n", "v2\n"]
    hits = [key for key, value in toolmod._contexts.items() if value[0] is doc.process]
    assert len(hits) == 1
