"""Loading CWL documents and job files."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import cwl_utils.parser.cwl_v1_2 as cwl
import pytest

from streamflow.cwl.loader import LoadedDocument, load_document, load_job
from streamflow.errors import InputValidationError, UnsupportedRequirementError, WorkflowDefinitionError

WriteTool = Callable[..., LoadedDocument]


def test_v1_0_documents_are_upgraded_to_v1_2(write_tool: WriteTool) -> None:
    """A v1.0 tool is returned as cwl_utils v1.2 objects and remembers its original version."""
    doc = write_tool(
        """\
        cwlVersion: v1.0
        class: CommandLineTool
        baseCommand: cat
        inputs:
          f:
            type: File
            secondaryFiles: [.idx]
            inputBinding: {loadContents: true}
        outputs: []
        """
    )
    assert isinstance(doc.process, cwl.CommandLineTool)
    assert doc.cwl_version == "v1.0"
    assert doc.process.inputs[0].loadContents is True


def test_invalid_old_syntax_is_rejected(write_tool: WriteTool) -> None:
    """A v1.0 document using v1.2-only syntax fails validation against v1.0, naming the file."""
    with pytest.raises(WorkflowDefinitionError, match=r"tool1\.cwl: not a valid CWL v1\.0 document"):
        write_tool(
            """\
            cwlVersion: v1.0
            class: CommandLineTool
            baseCommand: cat
            inputs:
              f: {type: File, secondaryFiles: [{pattern: .idx, required: true}]}
            outputs: []
            """
        )


def test_graph_documents_pick_main_or_the_fragment(tmp_path: Path) -> None:
    """In a $graph document, #main is chosen by default and #fragment selects another entry."""
    path = tmp_path / "packed.cwl"
    path.write_text(
        textwrap.dedent(
            """\
            cwlVersion: v1.2
            $graph:
              - {id: helper, class: CommandLineTool, baseCommand: "true", inputs: [], outputs: []}
              - {id: main, class: ExpressionTool, expression: "$({})", inputs: [], outputs: [],
                 requirements: [{class: InlineJavascriptRequirement}]}
            """
        )
    )
    main = load_document(str(path))
    assert isinstance(main.process, cwl.ExpressionTool)
    assert main.uri.endswith("packed.cwl#main")
    helper = load_document(f"{path}#helper")
    assert isinstance(helper.process, cwl.CommandLineTool)
    assert load_document(str(path)) is main


def test_yaml_errors_name_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file and the line."""
    path = tmp_path / "bad.cwl"
    path.write_text("cwlVersion: v1.2\nclass: CommandLineTool\ninputs: [\n")
    with pytest.raises(WorkflowDefinitionError, match=r"bad\.cwl:4:1: not valid YAML"):
        load_document(str(path))


def test_schema_errors_name_the_line(write_tool: WriteTool) -> None:
    """A schema violation reports the file and line of the offending field."""
    with pytest.raises(WorkflowDefinitionError) as info:
        write_tool("cwlVersion: v1.2\nclass: CommandLineTool\ninputs:\n  x: {type: integer}\noutputs: []\n")
    assert "tool1.cwl:4:" in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cwlVersion: v1.2\nclass: Banana\n", "unsupported process class 'Banana'"),
        ("cwlVersion: draft-2\nclass: CommandLineTool\n", "unsupported cwlVersion 'draft-2'"),
    ],
)
def test_unknown_class_or_version_is_unsupported(write_tool: WriteTool, text: str, message: str) -> None:
    """Unknown process classes and versions raise UnsupportedRequirementError."""
    with pytest.raises(UnsupportedRequirementError, match=message):
        write_tool(text)


def test_missing_cwl_version_is_a_definition_error(write_tool: WriteTool) -> None:
    """A document without cwlVersion says what is expected."""
    with pytest.raises(WorkflowDefinitionError, match="missing 'cwlVersion'"):
        write_tool("class: CommandLineTool\ninputs: []\noutputs: []\n")


def test_job_locations_are_resolved_relative_to_the_job_file(write_tool: WriteTool, tmp_path: Path) -> None:
    """Relative File locations and paths in a job become absolute file:// URIs; prefixes are expanded."""
    doc = write_tool(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\ninputs: {f: File}\noutputs: []\n"
    )
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "job.yml").write_text(
        "$namespaces: {ex: 'http://example.com/'}\n"
        "f: {class: File, location: 'data/a%20b.txt', format: ex:txt}\n"
        "g: {class: File, path: ../other.txt}\n"
    )
    job = load_job(str(jobs / "job.yml"), doc.process)
    assert job["f"]["location"] == (jobs / "data" / "a b.txt").as_uri().replace("a%20b", "a%20b")
    assert job["f"]["format"] == "http://example.com/txt"
    assert job["g"] == {"class": "File", "location": (tmp_path / "other.txt").as_uri()}


def test_job_file_errors_name_the_file(tmp_path: Path) -> None:
    """A missing or malformed job file is reported with its path."""
    with pytest.raises(InputValidationError, match="no such job file"):
        load_job(str(tmp_path / "missing.yml"), None)
    bad = tmp_path / "list.yml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(InputValidationError, match=r"list\.yml: a job file must hold a mapping"):
        load_job(str(bad), None)
    assert load_job(None, None) == {}
