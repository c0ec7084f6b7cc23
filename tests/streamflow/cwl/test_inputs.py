"""Input validation: defaults, types, File/Directory filling and the messages of bad inputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.loader import LoadedDocument
from streamflow.cwl.tool import resolve_requirements
from streamflow.errors import InputValidationError

TOOL = """\
    cwlVersion: v1.2
    class: CommandLineTool
    baseCommand: echo
    inputs:
      threads: {type: int, default: 1}
      name: string?
      mode: {type: {type: enum, symbols: [fast, slow]}, default: fast}
      sizes: {type: "int[]", default: []}
      rec:
        type:
          - "null"
          - type: record
            fields:
              a: int
              b: string?
      anything: Any?
      ratio: {type: float, default: 0.5}
    outputs: []
    """


def _validate(doc: LoadedDocument, job: dict[str, Any], base: Path, **kwargs: Any) -> dict[str, Any]:
    reqs, hints = resolve_requirements(doc.process, [], [])
    return fill_and_validate_inputs(
        doc.process, job, requirements=reqs, hints=hints, base_dir=str(base), **kwargs
    )


def test_defaults_are_applied_and_optional_inputs_are_null(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path
) -> None:
    """Absent inputs take their default, absent optional ones are null."""
    doc = write_tool(TOOL)
    result = _validate(doc, {}, tmp_path)
    assert result == {
        "threads": 1,
        "name": None,
        "mode": "fast",
        "sizes": [],
        "rec": None,
        "anything": None,
        "ratio": 0.5,
    }


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"threads": "abc"}, "input 'threads': expected int, got string 'abc'"),
        ({"threads": True}, "input 'threads': expected int, got boolean true"),
        ({"mode": "medium"}, "input 'mode': expected one of ['fast', 'slow'], got string 'medium'"),
        ({"sizes": [1, "two"]}, "input 'sizes[1]': expected int, got string 'two'"),
        ({"rec": {"b": "x"}}, "input 'rec.a': missing required value (expected int)"),
        ({"rec": {"a": "x"}}, "input 'rec.a': expected int, got string 'x'"),
        ({"ratio": "0.1"}, "input 'ratio': expected float, got string '0.1'"),
        ({"name": 3}, "input 'name': expected string, got int 3"),
    ],
)
def test_bad_values_name_the_input_and_the_expected_type(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, job: dict[str, Any], message: str
) -> None:
    """A value of the wrong type is reported with the input's name, the expected type and the value."""
    doc = write_tool(TOOL)
    with pytest.raises(InputValidationError) as info:
        _validate(doc, job, tmp_path)
    assert str(info.value) == message


def test_missing_required_file_is_reported(write_tool: Callable[..., LoadedDocument], tmp_path: Path) -> None:
    """A required File input that is absent is reported as missing."""
    doc = write_tool(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\ninputs:\n  f: File\noutputs: []\n"
    )
    with pytest.raises(InputValidationError, match=r"^input 'f': missing required value \(expected File\)$"):
        _validate(doc, {}, tmp_path)


def test_nonexistent_file_names_the_path(write_tool: Callable[..., LoadedDocument], tmp_path: Path) -> None:
    """A File whose location does not exist is reported with its local path."""
    doc = write_tool(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\ninputs:\n  f: File\noutputs: []\n"
    )
    with pytest.raises(InputValidationError) as info:
        _validate(doc, {"f": {"class": "File", "location": "nope.txt"}}, tmp_path)
    assert str(info.value) == f"input 'f': file not found: {tmp_path / 'nope.txt'}"


def test_file_fields_are_filled(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """File inputs get location, path, basename, nameroot, nameext, dirname and size."""
    doc = write_tool(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\ninputs:\n  f: File\noutputs: []\n"
    )
    write_file(tmp_path / "data" / "reads.fq.gz", "12345")
    result = _validate(doc, {"f": {"class": "File", "location": "data/reads.fq.gz"}}, tmp_path)
    f = result["f"]
    assert f["location"] == (tmp_path / "data" / "reads.fq.gz").as_uri()
    assert f["path"] == str(tmp_path / "data" / "reads.fq.gz")
    assert (f["basename"], f["nameroot"], f["nameext"]) == ("reads.fq.gz", "reads.fq", ".gz")
    assert f["dirname"] == str(tmp_path / "data")
    assert f["size"] == 5


def test_secondary_files_are_discovered_and_required(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """Secondary files follow ``^``/``?`` patterns; a missing required one is an error naming it."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: cat
        inputs:
          bam:
            type: File
            secondaryFiles: [^.bai, .md5?, {pattern: .idx, required: false}]
        outputs: []
        """
    )
    bam = write_file(tmp_path / "x.bam")
    with pytest.raises(InputValidationError) as info:
        _validate(doc, {"bam": bam}, tmp_path)
    assert (
        str(info.value)
        == f"input 'bam': missing required secondary file {tmp_path / 'x.bai'} (pattern '^.bai')"
    )
    write_file(tmp_path / "x.bai")
    write_file(tmp_path / "x.bam.idx")
    result = _validate(doc, {"bam": bam}, tmp_path)
    assert [sf["basename"] for sf in result["bam"]["secondaryFiles"]] == ["x.bai", "x.bam.idx"]


def test_load_contents_is_limited_to_64_kib(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """loadContents reads small files and rejects files over 64 KiB."""
    doc = write_tool(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\n"
        "inputs:\n  f: {type: File, loadContents: true}\noutputs: []\n"
    )
    small = write_file(tmp_path / "small.txt", "hello")
    assert _validate(doc, {"f": small}, tmp_path)["f"]["contents"] == "hello"
    big = write_file(tmp_path / "big.txt", "x" * (64 * 1024 + 1))
    with pytest.raises(InputValidationError, match="larger than the 64 KiB limit"):
        _validate(doc, {"f": big}, tmp_path)


def test_directory_listing_follows_load_listing(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """Directories have no listing by default, and a shallow or deep one when asked."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        baseCommand: ls
        inputs:
          none: Directory
          shallow: {type: Directory, loadListing: shallow_listing}
          deep: {type: Directory, loadListing: deep_listing}
        outputs: []
        """
    )
    write_file(tmp_path / "d" / "sub" / "f.txt", "x")
    d = {"class": "Directory", "location": "d"}
    result = _validate(doc, {"none": d, "shallow": d, "deep": d}, tmp_path)
    assert "listing" not in result["none"]
    assert [e["basename"] for e in result["shallow"]["listing"]] == ["sub"]
    assert "listing" not in result["shallow"]["listing"][0]
    assert result["deep"]["listing"][0]["listing"][0]["basename"] == "f.txt"


def test_format_mismatch_is_reported(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """A File whose format differs from the declared one is rejected with both formats."""
    doc = write_tool(
        """\
        cwlVersion: v1.2
        class: CommandLineTool
        $namespaces: {ex: "http://example.com/"}
        baseCommand: cat
        inputs:
          f: {type: File, format: ex:fasta}
        outputs: []
        """
    )
    f = write_file(tmp_path / "a.fa") | {"format": "http://example.com/fastq"}
    with pytest.raises(InputValidationError) as info:
        _validate(doc, {"f": f}, tmp_path)
    assert (
        str(info.value) == "input 'f': expected format http://example.com/fasta, got http://example.com/fastq"
    )
    ok = write_file(tmp_path / "b.fa") | {"format": "ex:fasta"}
    assert _validate(doc, {"f": ok}, tmp_path, namespaces=doc.namespaces)["f"]["format"] == "ex:fasta"


def test_job_order_is_not_modified(
    write_tool: Callable[..., LoadedDocument], tmp_path: Path, write_file: Callable[..., dict[str, Any]]
) -> None:
    """Validation returns a new object and leaves the caller's job order untouched."""
    doc = write_tool(
        "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: cat\ninputs:\n  f: File\noutputs: []\n"
    )
    job = {"f": write_file(tmp_path / "a.txt", "a")}
    before = {"f": dict(job["f"])}
    _validate(doc, job, tmp_path)
    assert job == before
