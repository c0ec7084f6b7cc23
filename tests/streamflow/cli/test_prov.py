"""``streamflow prov``: a Workflow Run RO-Crate of a run, from the event log."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

from rocrate.rocrate import ROCrate

from tests.conftest import run_cli
from tests.streamflow.cli.conftest import FinishedRun, run_workflow

PROFILES = {
    "https://w3id.org/ro/wfrun/process/0.5",
    "https://w3id.org/ro/wfrun/workflow/0.5",
    "https://w3id.org/ro/wfrun/provenance/0.5",
}


def _ids(value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    return [v.id if hasattr(v, "id") else v["@id"] for v in values]


def _types(entity: Any) -> set[str]:
    kind = entity.type
    return set(kind if isinstance(kind, list) else [kind])


def _export(run: FinishedRun, output: Path) -> Path:
    result = run_cli(["prov", run.run_id, "--output", str(output)], run.env, cwd=run.root)
    assert result.returncode == 0, result.stderr
    return output


def _check_references(crate_dir: Path) -> None:
    """Every local reference in the metadata names an entity of the graph (the crate is closed)."""
    graph = json.loads((crate_dir / "ro-crate-metadata.json").read_text())["@graph"]
    ids = {e["@id"] for e in graph}

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"@id"} and not value["@id"].startswith(("http://", "https://")):
                assert value["@id"] in ids, value
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    for entity in graph:
        walk({k: v for k, v in entity.items() if k != "@id"})


def test_prov_zip_is_a_workflow_run_crate(finished_run: FinishedRun) -> None:
    """The zip re-loads with rocrate and has the entities the Workflow Run Crate profiles require."""
    archive = _export(finished_run, finished_run.root / "run.crate.zip")
    crate_dir = finished_run.root / "crate"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(crate_dir)
    _check_references(crate_dir)
    crate = ROCrate(crate_dir)

    assert set(_ids(crate.root_dataset["conformsTo"])) >= PROFILES
    workflow = crate.mainEntity
    assert {"File", "SoftwareSourceCode", "ComputationalWorkflow"} <= _types(workflow)
    assert workflow["programmingLanguage"].id.endswith("#cwl")
    assert (crate_dir / workflow.id).read_text() == (finished_run.root / "wf.cwl").read_text()
    assert [p["name"] for p in workflow["input"]] == ["messages"]
    assert [p["name"] for p in workflow["output"]] == ["outs"]

    actions = [e for e in crate.get_entities() if "CreateAction" in _types(e)]
    [run_action] = [a for a in actions if a["instrument"].id == workflow.id]
    assert run_action.id in _ids(crate.root_dataset["mentions"])
    assert run_action["actionStatus"] == "http://schema.org/CompletedActionStatus"
    assert run_action["startTime"] <= run_action["endTime"]
    [messages] = run_action["object"]
    assert json.loads(messages["value"]) == ["alpha", "beta", "gamma"]
    outputs = run_action["result"]
    assert len(outputs) == 3
    for entity in outputs:  # the delivered files are in the crate, with their checksums
        content = (crate_dir / entity.id).read_bytes()
        assert entity["sha1"] == hashlib.sha1(content).hexdigest()
        assert content.decode().strip() in {"alpha", "beta", "gamma"}

    jobs = [a for a in actions if a is not run_action]
    assert len(jobs) == 3
    for job in jobs:
        assert job["instrument"].id == "echo.cwl" and job["startTime"] <= job["endTime"]
        assert len(job["object"]) == 1 and len(job["result"]) == 1
    controls = [e for e in crate.get_entities() if "ControlAction" in _types(e)]
    assert sorted(c["object"].id for c in controls) == sorted(j.id for j in jobs)
    assert {c["instrument"]["@type"] for c in controls} == {"HowToStep"}
    assert {c["instrument"].id for c in controls} == set(_ids(workflow["step"]))
    [organize] = [e for e in crate.get_entities() if "OrganizeAction" in _types(e)]
    assert organize["instrument"]["name"] == "StreamFlow"
    assert _ids(organize["result"]) == [run_action.id]
    assert sorted(_ids(organize["object"])) == sorted(c.id for c in controls)


def test_prov_token_provenance_matches_the_log(finished_run: FinishedRun) -> None:
    """The crate's token graph has every TokenEmitted of the log, with its inputs as edges."""
    crate_dir = _export(finished_run, finished_run.root / "crate-dir")
    graph = json.loads((crate_dir / "provenance" / "tokens.json").read_text())
    events = run_cli(["events", finished_run.run_id, "--json", "--type", "TokenEmitted"], finished_run.env)
    assert events.returncode == 0, events.stderr
    emitted = [json.loads(line) for line in events.stdout.splitlines()]
    assert [t["id"] for t in graph["tokens"]] == [e["event_id"] for e in emitted]
    assert sorted(map(tuple, graph["edges"])) == sorted(
        (source, e["event_id"]) for e in emitted for source in e["inputs"])
    known = {t["id"] for t in graph["tokens"]}
    assert graph["edges"] and all(source in known for source, _ in graph["edges"])
    # the gathered output token descends from the root input token through the echo jobs
    final = [t for t in graph["tokens"] if t["port_name"] == "/echo/out"]
    root = [t for t in graph["tokens"] if t["port_name"] == "/messages"]
    assert len(final) == 1 and len(root) == 1
    parents = {dst: [s for s, d in graph["edges"] if d == dst] for dst in known}
    seen, todo = set(), [final[0]["id"]]
    while todo:
        node = todo.pop()
        if node not in seen:
            seen.add(node)
            todo.extend(parents[node])
    assert root[0]["id"] in seen
    log_lines = (crate_dir / "provenance" / "events.jsonl").read_text().splitlines()
    assert json.loads(log_lines[-1])["type"] == "RunCompleted"


def test_prov_of_a_failed_tool_run_records_the_failure(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A single tool that fails gives a crate whose run and job actions are failed, with the error."""
    run = run_workflow(tmp_path, sf_env, failing=True)
    assert run.returncode == 1
    crate = ROCrate(_export(run, tmp_path / "failed-crate"))
    actions = [e for e in crate.get_entities() if "CreateAction" in _types(e)]
    [run_action] = [a for a in actions if a.id == f"#run-{run.run_id}"]
    assert run_action["actionStatus"] == "http://schema.org/FailedActionStatus"
    assert run_action["error"]
    [job] = [a for a in actions if a is not run_action]
    assert job["actionStatus"] == "http://schema.org/FailedActionStatus"
    assert job["startTime"] <= job["endTime"] and "result" not in job
    assert crate.mainEntity.id == "fail.cwl"
