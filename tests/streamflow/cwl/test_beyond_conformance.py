"""Issue 11: CWL beyond the conformance suite, one regression test per bug.

The documents are in ``data/beyond``; the end-to-end ones run through ``streamflow run``
against the session's NATS server.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from streamflow.cwl import container, loader
from streamflow.cwl.outputs import validate_workflow_outputs
from streamflow.cwl.translator import translate
from streamflow.cwl.types import SchemaIndex, decidable, inline_named
from streamflow.cwl.utils import Requirements
from tests.conftest import run_cli

DATA = Path(__file__).parent / "data" / "beyond"


def _run(tmp_path: Path, env: dict[str, str], *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(["run", "--quiet", "--outdir", str(tmp_path / "out"), *args], env, cwd=cwd)


def _outputs(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# 1. pickValue on a single source ------------------------------------------------------------


def test_pick_value_on_a_single_source(tmp_path: Path, sf_env: dict[str, str]) -> None:
    outputs = _outputs(_run(tmp_path, sf_env, str(DATA / "pick-single.cwl"), str(DATA / "pick.yml")))
    assert outputs == {"out1": "hi", "out2": "hi", "out4": "hi"}


def test_all_non_null_on_a_single_source_skipped_and_scattered(tmp_path: Path, sf_env: dict[str, str]) -> None:
    # A skipped single source is a one-element list [null]; a scattered source is already a list.
    outputs = _outputs(_run(tmp_path, sf_env, str(DATA / "pick-all.cwl"), str(DATA / "pick-all.yml")))
    assert outputs == {"all": [], "kept": ["a", "b"]}


def test_first_non_null_of_a_skipped_single_source_is_an_error(tmp_path: Path, sf_env: dict[str, str]) -> None:
    job = tmp_path / "job.yml"
    job.write_text("msg: hi\ngo: false\n")
    result = _run(tmp_path, sf_env, str(DATA / "pick-single.cwl"), str(job))
    assert result.returncode == 1
    assert "pickValue" in result.stderr and "null" in result.stderr
    assert "needs a list" not in result.stderr


# 2. inputBinding.loadContents in v1.2 -------------------------------------------------------


@pytest.mark.parametrize("document", ["load-contents.cwl", "load-contents-wf.cwl"])
def test_input_binding_load_contents_in_v1_2(tmp_path: Path, sf_env: dict[str, str], document: str) -> None:
    outputs = _outputs(_run(tmp_path, sf_env, str(DATA / document), str(DATA / "load-contents.yml")))
    assert outputs == {"text": "hello\n"}


# 3. workflow outputs typed by SchemaDefRequirement types ------------------------------------


def test_schema_def_typed_workflow_outputs(tmp_path: Path, sf_env: dict[str, str]) -> None:
    outputs = _outputs(_run(tmp_path, sf_env, str(DATA / "schemadef-outputs.cwl"), str(DATA / "msg.yml")))
    assert outputs == {"col": "green", "rec": {"prop": "hi"}, "many": [{"prop": "a"}, {"prop": "hi"}]}
    outputs = _outputs(_run(tmp_path, sf_env, str(DATA / "schemadef-named-array.cwl"), str(DATA / "msg.yml")))
    assert outputs == {"lst": ["hi", "hi"]}


def test_final_output_check_knows_schema_def_types_and_still_checks() -> None:
    loaded = loader.load_document(str(DATA / "schemadef-outputs.cwl"))
    graph = translate(loaded.process, cwl_version=loaded.cwl_version, job_order={"msg": "x"})
    assert all(decidable(t) for t in graph.output_types.values())
    good = {"col": "red", "rec": {"prop": "p"}, "many": []}
    assert validate_workflow_outputs(good, graph.output_types) is None
    problem = validate_workflow_outputs({**good, "col": "blue"}, graph.output_types)
    assert problem is not None and "'col'" in problem and "blue" in problem
    problem = validate_workflow_outputs({**good, "many": [{"prop": 3}]}, graph.output_types)
    assert problem is not None and "many[0].prop" in problem


def test_an_undecidable_output_type_does_not_fail_the_run() -> None:
    recursive = {"name": "file:///x.cwl#node", "type": "record",
                 "fields": [{"name": "next", "type": ["null", "file:///x.cwl#node"]}]}
    index = SchemaIndex(Requirements([{"class": "SchemaDefRequirement", "types": [recursive]}]))
    inlined = inline_named("file:///x.cwl#node", index)
    assert not decidable(inlined)  # the recursion stays a name
    assert validate_workflow_outputs({"o": {"next": None}}, {"o": inlined}) is None
    assert validate_workflow_outputs({"o": 1}, {"o": "file:///elsewhere.cwl#unknown"}) is None


# 4. special characters in document paths ----------------------------------------------------


SPECIAL_DIRS = ["a+b", "with space", "hash#tag", "per%25cent", "naïve-é"]


@pytest.mark.parametrize("version", ["v1.0", "v1.1", "v1.2"])
def test_documents_load_from_paths_with_special_characters(tmp_path: Path, version: str) -> None:
    for name in SPECIAL_DIRS:
        directory = tmp_path / name
        directory.mkdir()
        tool = (DATA / "namespaced-hint.cwl").read_text().replace("cwlVersion: v1.0", f"cwlVersion: {version}")
        (directory / "echo+1.cwl").write_text(tool)
        workflow = ("cwlVersion: VERSION\nclass: Workflow\ninputs: {msg: string}\noutputs:\n"
                    "  out: {type: File, outputSource: s/out}\nsteps:\n"
                    "  s: {run: echo+1.cwl, in: {msg: msg}, out: [out]}\n").replace("VERSION", version)
        (directory / "wf.cwl").write_text(workflow)
        loaded = loader.load_document(str(directory / "wf.cwl"))
        assert loaded.cwl_version == version
        graph = translate(loaded.process, cwl_version=version, job_order={"msg": "x"})
        assert any(step.name == "/s" for step in graph.steps.values())


def test_run_from_a_path_with_special_characters(tmp_path: Path, sf_env: dict[str, str]) -> None:
    directory = tmp_path / "my+tools #1 %20 é"
    directory.mkdir()
    shutil.copy(DATA / "namespaced-hint.cwl", directory / "echo.cwl")
    (directory / "job.yml").write_text("msg: hello\n")
    outputs = _outputs(_run(tmp_path, sf_env, str(directory / "echo.cwl"), str(directory / "job.yml")))
    assert outputs["out"]["basename"] == "out.txt" and outputs["out"]["size"] == 6


# 5. duplicate InitialWorkDir entrynames -----------------------------------------------------


def test_duplicate_entrynames_are_a_staging_conflict(tmp_path: Path, sf_env: dict[str, str]) -> None:
    result = _run(tmp_path, sf_env, str(DATA / "duplicate-entryname.cwl"))
    assert result.returncode == 1, result.stderr
    assert "staging conflict" in result.stderr and "'conf.txt'" in result.stderr
    assert not (tmp_path / "out" / "out").exists()


# 6. no network look-ups while loading -------------------------------------------------------


def test_loading_a_namespaced_hint_makes_no_network_look_up(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        looked_up.append(args[:2])
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for version in ("v1.0", "v1.1", "v1.2"):
        monkeypatch.setattr(loader, "_cache", {})
        path = DATA / "namespaced-hint.cwl"
        if version != "v1.0":
            copy = Path(str(path).replace(".cwl", f"-{version}.cwl"))
        loaded = loader.load_document(str(path)) if version == "v1.0" else None
        if loaded is None:
            copy.write_text(path.read_text().replace("cwlVersion: v1.0", f"cwlVersion: {version}"))
            try:
                loaded = loader.load_document(str(copy))
            finally:
                copy.unlink()
        assert loaded.cwl_version == version
    assert looked_up == []


# 7. containers: --no-container, pull failures, hints ----------------------------------------


def test_no_container_is_recorded_and_survives_a_rebuilt_graph() -> None:
    from streamflow.cwl.translator import RUN_CONTAINER
    from streamflow.workflow.graph import ExecuteStep

    loaded = loader.load_document(str(DATA / "docker-required.cwl"))
    graph = translate(loaded.process, cwl_version="v1.2", job_order={RUN_CONTAINER: "none"})
    steps = [s for s in graph.steps.values() if isinstance(s, ExecuteStep)]
    assert steps and all(s.container == "none" for s in steps)
    graph = translate(loaded.process, cwl_version="v1.2", job_order={})
    assert all(s.container is None for s in graph.steps.values() if isinstance(s, ExecuteStep))


def test_an_unpullable_image_names_the_image_and_the_engine(tmp_path: Path) -> None:
    fake = tmp_path / "fake-engine"
    fake.write_text("#!/bin/sh\nif [ \"$1\" = pull ]; then echo 'Error: connection refused' >&2; exit 125; fi\n"
                    "exit 1\n")
    fake.chmod(0o755)
    with pytest.raises(container.ImageUnavailable) as caught:
        container.ensure_image(str(fake), "localhost:9/nope:1")
    message = str(caught.value)
    assert "'localhost:9/nope:1'" in message and "fake-engine" in message and "connection refused" in message
