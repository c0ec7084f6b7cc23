"""``streamflow prov RUN_ID``: a Workflow Run RO-Crate built from the event log.

The crate follows the Workflow Run Crate profiles (process, workflow and provenance run
crates, version 0.5):

- the workflow document is the crate's ``mainEntity`` (a ``ComputationalWorkflow`` in CWL),
  with the tool documents it runs and one ``HowToStep`` per step that ran jobs;
- the run is a ``CreateAction`` whose ``object`` is the run's inputs and whose ``result``
  is its outputs; the engine's ``OrganizeAction`` links it to one ``ControlAction`` per
  job attempt, each controlling that attempt's ``CreateAction`` (start and end times,
  status, input and output values);
- files are copied in as ``data/<sha1>/<basename>`` (so identical content is stored once);
  other values become ``PropertyValue`` entities;
- the token provenance (which token was computed from which, from
  ``TokenEmitted.inputs``) is ``provenance/tokens.json``, and the run's whole event log is
  ``provenance/events.jsonl``, both described as data entities of the crate.

Everything comes from the log; the only files read are the ones the log names.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.log import Record
from events.schema import RunStarted, RunSubmitted, TokenEmitted
from streamflow.cli.commands.report import Timeline, read_run

__all__ = ["PROFILES", "WFRUN_CONTEXT", "build_crate", "register", "run", "token_graph"]

WFRUN = "https://w3id.org/ro/wfrun"
PROFILES = {
    "process": f"{WFRUN}/process/0.5",
    "workflow": f"{WFRUN}/workflow/0.5",
    "provenance": f"{WFRUN}/provenance/0.5",
    "wroc": "https://w3id.org/workflowhub/workflow-ro-crate/1.0",
}
WFRUN_CONTEXT = "https://w3id.org/ro/terms/workflow-run/context"
FORMAL_PARAMETER = "https://bioschemas.org/profiles/FormalParameter/1.0-RELEASE"
STATUS = {
    "COMPLETED": "http://schema.org/CompletedActionStatus",
    "FAILED": "http://schema.org/FailedActionStatus",
    "CANCELLED": "http://schema.org/FailedActionStatus",
    "RUNNING": "http://schema.org/ActiveActionStatus",
}


def _iso(value: float | None) -> str | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, UTC).isoformat()


def _when(record: Record) -> float:
    return record.time or record.envelope.occurred_at / 1e9


def token_graph(records: list[Record], ports: dict[str, str]) -> dict[str, Any]:
    """The token provenance DAG: one node per emitted token, edges to the tokens it came from.

    Args:
        records: the run's records in log order.
        ports: port id -> port name.

    Returns:
        ``{"tokens": [...], "edges": [[from_event_id, to_event_id], ...]}``.
    """
    tokens = []
    edges: list[list[str]] = []
    for record in records:
        body = record.body
        if not isinstance(body, TokenEmitted):
            continue
        eid = record.envelope.event_id
        port = record.agg_id or ""
        tokens.append({
            "id": eid,
            "port": port,
            "port_name": ports.get(port, port),
            "tag": body.tag,
            "producer": body.producer or record.envelope.producer,
            "job": body.job,
            "inputs": list(body.inputs),
            "gen": body.gen,
            "time": _iso(_when(record)),
            "value": body.value,
        })
        edges.extend([source, eid] for source in body.inputs)
    return {"tokens": tokens, "edges": edges}


def _cwl_steps(workflow: Path) -> dict[str, Path]:
    """Map each step name of a CWL workflow document to the file its ``run`` names."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        doc = YAML(typ="safe", pure=True).load(workflow.read_text(encoding="utf-8"))
    except (OSError, YAMLError):
        return {}
    if not isinstance(doc, dict) or doc.get("class") != "Workflow":
        return {}
    steps = doc.get("steps") or {}
    items = steps.items() if isinstance(steps, dict) else ((s.get("id", ""), s) for s in steps
                                                           if isinstance(s, dict))
    result: dict[str, Path] = {}
    for name, step in items:
        target = step.get("run") if isinstance(step, dict) else None
        if isinstance(target, str) and "#" not in target and not target.startswith(("http:", "https:")):
            path = (workflow.parent / target.removeprefix("file://")).resolve()
            if path.is_file():
                result[str(name).lstrip("#")] = path
    return result


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class _Builder:
    """Adds a run's values, tools and actions to a crate, deduplicating entities."""

    crate: Any
    base: Path
    files: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def relative(self, path: Path) -> str:
        try:
            return str(path.relative_to(self.base))
        except ValueError:
            return f"tools/{path.name}"

    def parameter(self, owner: Any, name: str, value: Any, direction: str) -> Any:
        """The FormalParameter ``name`` of ``owner`` (a workflow or tool), created once."""
        key = f"{owner.id}#{direction}/{name}" if "#" not in owner.id else f"{owner.id}/{direction}/{name}"
        param = self.params.get(key)
        if param is None:
            kind = _additional_type(value)
            param = self.crate.add_formal_parameter(name=name, additionalType=kind, identifier=key,
                                                    properties={"conformsTo": {"@id": FORMAL_PARAMETER}})
            self.params[key] = param
            existing = owner.get(direction) or []
            existing = existing if isinstance(existing, list) else [existing]
            owner[direction] = [*existing, param]
        return param

    def entities(self, value: Any, param: Any, label: str) -> list[Any]:
        """The crate entities of a CWL value (files copied in, others as PropertyValue)."""
        if isinstance(value, dict) and value.get("class") in ("File", "Directory"):
            entity = self._file(value)
            if entity is None:
                return []
            examples = entity.get("exampleOfWork") or []
            examples = examples if isinstance(examples, list) else [examples]
            if all(e.id != param.id for e in examples):
                entity["exampleOfWork"] = [*examples, param]
            return [entity]
        if isinstance(value, list) and value and all(
                isinstance(v, dict) and v.get("class") in ("File", "Directory") for v in value):
            return [e for v in value for e in self.entities(v, param, label)]
        text = json.dumps(value, sort_keys=True, default=str)
        key = f"#pv-{label}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
        entity = self.values.get(key)
        if entity is None:
            shown = value if isinstance(value, str | int | float | bool) else text
            entity = self.crate.add(_entity(self.crate, key, properties={
                "@type": "PropertyValue", "name": label, "value": shown, "exampleOfWork": {"@id": param.id},
            }))
            self.values[key] = entity
        return [entity]

    def _file(self, value: dict[str, Any]) -> Any:
        path_text = value.get("path") or str(value.get("location", "")).removeprefix("file://")
        if not path_text:
            return None
        path = Path(path_text)
        basename = value.get("basename") or path.name
        if value.get("class") == "Directory":
            key = f"dir:{path}"
            if key not in self.files:
                dest = f"data/{hashlib.sha1(str(path).encode()).hexdigest()}/{basename}/"
                if path.is_dir():
                    self.files[key] = self.crate.add_dataset(path, dest_path=dest)
                else:
                    self.files[key] = self.crate.add_dataset(None, dest_path=dest)
            return self.files[key]
        checksum = str(value.get("checksum") or "")
        sha1 = checksum.removeprefix("sha1$") if checksum.startswith("sha1$") else ""
        if not sha1 and path.is_file():
            sha1 = _sha1(path)
        key = f"file:{sha1 or path}/{basename}"
        if key not in self.files:
            dest = f"data/{sha1 or hashlib.sha1(str(path).encode()).hexdigest()}/{basename}"
            props: dict[str, Any] = {"name": basename}
            if sha1:
                props["sha1"] = sha1
            if isinstance(value.get("size"), int):
                props["contentSize"] = str(value["size"])
            if value.get("format"):
                props["encodingFormat"] = value["format"]
            source = path if path.is_file() else None
            self.files[key] = self.crate.add_file(source, dest_path=dest, properties=props)
        return self.files[key]


def _entity(crate: Any, identifier: str, properties: dict[str, Any]) -> Any:
    """A contextual entity of ``crate`` (not yet added)."""
    from rocrate.model.contextentity import ContextEntity  # type: ignore[import-untyped]

    return ContextEntity(crate, identifier, properties=properties)


def _additional_type(value: Any) -> str:
    if isinstance(value, dict) and value.get("class") == "File":
        return "File"
    if isinstance(value, dict) and value.get("class") == "Directory":
        return "Dataset"
    if isinstance(value, list):
        return "Collection"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "Text"
    return "DataType"


def _has_secrets(inputs: Any) -> bool:
    """Whether recorded inputs hold secret placeholders (``cwltool:Secrets``)."""
    from streamflow.secrets import PLACEHOLDER

    return PLACEHOLDER.search(json.dumps(inputs, default=str)) is not None


def build_crate(run_id: str, records: list[Record]) -> Any:
    """Build the Workflow Run RO-Crate of a run from its records (returns a ``rocrate.ROCrate``)."""
    from rocrate.rocrate import ROCrate  # type: ignore[import-untyped]

    timeline = Timeline.of(run_id, records)
    summary = timeline.summary
    submitted = next((r.body for r in records if isinstance(r.body, RunSubmitted)), None)
    started_at = next((_when(r) for r in records if isinstance(r.body, RunStarted)), summary.submitted_at)
    crate = ROCrate(version="1.1")  # the version the Workflow Run Crate profiles 0.5 build on
    crate.metadata.extra_contexts.append(WFRUN_CONTEXT)
    workflow_path = Path((submitted.workflow if submitted else summary.workflow).split("#", 1)[0])
    builder = _Builder(crate, workflow_path.parent)
    wf_props = {"name": summary.name or workflow_path.name}
    workflow = crate.add_workflow(workflow_path if workflow_path.is_file() else None,
                                  dest_path=workflow_path.name, main=True, lang="cwl", properties=wf_props)

    engine = crate.add(_entity(crate, "#streamflow", properties={
        "@type": "SoftwareApplication", "name": "StreamFlow",
        "softwareVersion": submitted.engine_version if submitted else "",
        "url": "https://streamflow.di.unito.it/",
    }))

    # Tools and steps: one HowToStep per step that ran jobs.
    tool_files = _cwl_steps(workflow_path) if workflow_path.is_file() else {}
    tools: dict[str, Any] = {}
    how_to: dict[str, Any] = {}
    step_tools: dict[str, Any] = {}
    for position, step_id in enumerate(sorted({j.step for j in timeline.jobs.values()}, key=_step_order)):
        step_name = timeline.steps.get(step_id, step_id)
        short = step_name.strip("/").split("/")[0] if step_name.strip("/") else workflow_path.name
        tool_path = tool_files.get(short)
        if tool_path is not None:
            key = str(tool_path)
            if key not in tools:
                tools[key] = crate.add_file(tool_path, dest_path=builder.relative(tool_path), properties={
                    "@type": ["File", "SoftwareApplication"], "name": tool_path.name,
                })
            tool = tools[key]
            parts = workflow.get("hasPart") or []
            parts = parts if isinstance(parts, list) else [parts]
            if all(p.id != tool.id for p in parts):
                workflow["hasPart"] = [*parts, tool]
        else:
            tool = workflow
        how_to[step_id] = crate.add(_entity(crate, f"{workflow.id}#step/{short}-{step_id}", properties={
            "@type": "HowToStep", "name": step_name, "position": str(position),
            "workExample": {"@id": tool.id},
        }))
        step_tools[step_id] = tool
    workflow["step"] = list(how_to.values())

    # The run: inputs and outputs of the workflow.
    objects = [e for name, value in (submitted.inputs if submitted else {}).items()
               for e in builder.entities(value, builder.parameter(workflow, name, value, "input"), name)]
    results = [e for name, value in (summary.outputs or {}).items()
               for e in builder.entities(value, builder.parameter(workflow, name, value, "output"), name)]
    run_props: dict[str, Any] = {
        "@type": "CreateAction",
        "name": f"Run {run_id} of {summary.name or workflow_path.name}",
        "startTime": _iso(started_at),
        "actionStatus": STATUS.get(summary.status, "http://schema.org/PotentialActionStatus"),
    }
    if summary.ended_at is not None:
        run_props["endTime"] = _iso(summary.ended_at)
    if summary.error:
        run_props["error"] = summary.error
    wf_action = crate.add_action(workflow, identifier=f"#run-{run_id}", object=objects, result=results,
                                 properties=run_props)

    # Every job attempt: a CreateAction controlled by a ControlAction of its step.
    controls = []
    for info in timeline.jobs.values():
        step = how_to.get(info.step)
        if step is None:
            continue
        tool = step_tools[info.step]
        job_objects = [e for name, value in info.inputs.items()
                       for e in builder.entities(value, builder.parameter(tool, name, value, "input"), name)]
        for attempt in info.attempts:
            props: dict[str, Any] = {
                "@type": "CreateAction",
                "name": f"Job {info.job} ({timeline.steps.get(info.step, info.step)} tag {info.tag}) "
                        f"attempt {attempt.attempt}",
                "startTime": _iso(attempt.start),
                "actionStatus": STATUS[attempt.status],
                "description": f"ran on {attempt.deployment}/{attempt.location} by {attempt.worker}",
            }
            if attempt.end is not None:
                props["endTime"] = _iso(attempt.end)
            if attempt.error:
                props["error"] = attempt.error
            job_results = []
            if attempt.status == "COMPLETED":
                job_results = [e for name, value in (info.outputs or {}).items()
                               for e in builder.entities(value, builder.parameter(tool, name, value, "output"),
                                                         name)]
            ident = f"#job-{info.job}-{attempt.attempt}-{attempt.delivery}"
            action = crate.add_action(tool, identifier=ident, object=job_objects, result=job_results,
                                      properties=props)
            controls.append(crate.add(_entity(crate, f"#control-{info.job}-{attempt.attempt}-{attempt.delivery}",
                                                    properties={"@type": "ControlAction", "name": props["name"],
                                                                "instrument": {"@id": step.id},
                                                                "object": {"@id": action.id}})))
    organize: dict[str, Any] = {"@type": "OrganizeAction", "name": f"StreamFlow orchestration of run {run_id}",
                                "startTime": _iso(summary.submitted_at or started_at)}
    if summary.ended_at is not None:
        organize["endTime"] = _iso(summary.ended_at)
    crate.add_action(engine, identifier=f"#organize-{run_id}", object=controls, result=[wf_action],
                     properties=organize)

    # Token provenance and the raw log.
    ports = dict(submitted.ports) if submitted else {}
    graph = json.dumps(token_graph(records, ports), indent=2, default=str)
    crate.add_file(io.StringIO(graph), dest_path="provenance/tokens.json", properties={
        "name": "Token provenance", "encodingFormat": "application/json",
        "description": "Every token the run emitted, with the ids of the tokens it was computed from.",
    })
    from streamflow.runs.events import record_to_json

    log_text = "".join(json.dumps(record_to_json(r), default=str) + "\n" for r in records)
    crate.add_file(io.StringIO(log_text), dest_path="provenance/events.jsonl", properties={
        "name": "Event log", "encodingFormat": "application/x-ndjson",
        "description": f"The event log of run {run_id}, in log order.",
    })
    if submitted and submitted.job and Path(submitted.job).is_file():
        if _has_secrets(submitted.inputs):
            # The document holds secret values in clear: the crate gets the inputs as recorded
            # (secrets as placeholders) instead.
            crate.add_file(io.StringIO(json.dumps(submitted.inputs, indent=2, sort_keys=True, default=str)),
                           dest_path=f"inputs/{Path(submitted.job).stem}.redacted.json",
                           properties={"name": "Job (inputs) document, secret inputs redacted",
                                       "encodingFormat": "application/json"})
        else:
            crate.add_file(Path(submitted.job), dest_path=f"inputs/{Path(submitted.job).name}",
                           properties={"name": "Job (inputs) document", "encodingFormat": "application/yaml"})

    root = crate.root_dataset
    root["name"] = f"StreamFlow run {run_id} of {summary.name or workflow_path.name}"
    root["description"] = f"Workflow Run RO-Crate of StreamFlow run {run_id} ({summary.status})"
    root["datePublished"] = _iso(summary.ended_at or started_at)
    root["license"] = "notspecified"
    root["mentions"] = [wf_action]
    root["conformsTo"] = [{"@id": PROFILES[key]} for key in ("process", "workflow", "provenance")]
    for key in ("process", "workflow", "provenance"):
        crate.add(_entity(crate, PROFILES[key], properties={
            "@type": "CreativeWork", "name": f"{key.capitalize()} Run Crate", "version": "0.5"}))
    return crate


def _step_order(step_id: str) -> tuple[int, str]:
    digits = step_id.lstrip("s")
    return (int(digits), step_id) if digits.isdigit() else (1 << 30, step_id)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``streamflow prov``."""
    from streamflow.cli.main import add_bus_options
    from streamflow.cli.runids import run_id_arg

    parser = subparsers.add_parser("prov", help="export a run's provenance as a Workflow Run RO-Crate")
    parser.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    parser.add_argument("--output", "-o", metavar="DIR_OR_ZIP",
                        help="a directory, or a file ending in .zip (default: RUN_ID.crate.zip)")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the crate and write it."""
    records = asyncio.run(read_run(args, args.run_id))
    crate = build_crate(args.run_id, records)
    output = args.output or f"{args.run_id}.crate.zip"
    if output.endswith(".zip"):
        crate.write_zip(output)
    else:
        crate.write(output)
    print(f"streamflow: RO-Crate written to {output}", file=sys.stderr)
    return 0
