"""The JSON views of the UI: pure functions of a run's fold (no I/O but reading job files).

Every view reads the run's one projection (:class:`events.projections.RunSummary`, through
:class:`streamflow.ui.live.RunFold`); none folds job state itself.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from events.projections import JobView
from streamflow.ui.live import RunFold

__all__ = ["TAIL_BYTES", "graph_view", "job_detail", "job_rows", "run_detail", "timeline_view"]

TAIL_BYTES = 64 * 1024
AGGREGATE_OVER = 2000
"""Timelines of more attempts than this are sent as per-lane buckets."""


def run_detail(fold: RunFold) -> dict[str, Any]:
    """``GET /api/runs/{run}``."""
    return {"summary": fold.summary_dict(), "steps": fold.step_rows(), "outputs": fold.summary.outputs}


def timeline_view(fold: RunFold, *, lane: str = "location", buckets: int = 200) -> dict[str, Any]:
    """``GET /api/runs/{run}/timeline``: ``RunSummary.timeline()`` (what ``streamflow report``
    embeds) plus ``version``; over :data:`AGGREGATE_OVER` attempts, ``jobs`` is replaced by
    per-lane buckets (``aggregated: true``)."""
    data = fold.summary.timeline()
    data["version"] = fold.attempt_version
    attempts = data["jobs"]
    if len(attempts) <= AGGREGATE_OVER:
        return data
    starts = [a["start"] for a in attempts]
    ends = [a["end"] or a["start"] for a in attempts]
    t0, t1 = min(starts), max(max(ends), max(starts))
    width = max((t1 - t0) / buckets, 1e-6)
    lanes: dict[str, dict[str, Any]] = {}
    for a in attempts:
        key = f"{a['deployment']}/{a['location']}" if lane == "location" else a["step_name"]
        row = lanes.setdefault(key, {"lane": key, "running": [0] * buckets, "completed": 0, "failed": 0})
        first = min(buckets - 1, int((a["start"] - t0) / width))
        last = min(buckets - 1, int(((a["end"] or t1) - t0) / width))
        for b in range(first, last + 1):
            row["running"][b] += 1
        if a["status"] in ("COMPLETED", "FAILED"):
            row[a["status"].lower()] += 1
    data["jobs"] = [a for a in attempts if a["status"] == "FAILED"][:AGGREGATE_OVER]
    data["aggregated"] = True
    data["buckets"] = {"start": t0, "width": width, "count": buckets, "by": lane, "lanes": list(lanes.values())}
    return data


def _job_row(fold: RunFold, info: JobView) -> dict[str, Any]:
    last = info.attempts[-1] if info.attempts else None
    return {
        "job": info.job, "step": info.step, "step_name": fold.summary.step_label(info.step),
        "tag": info.tag, "state": info.state, "status": info.status, "attempts": len(info.attempts),
        "location": info.location, "deployment": info.deployment,
        "start": last.start if last else None, "end": last.end if last else None,
        "duration": last.duration if last else None, "exit_code": last.exit_code if last else None,
        "error": last.error if last else None, "retries": info.retries, "reused_from": info.reused_from,
    }


def job_rows(fold: RunFold, *, state: str | None = None, step: str | None = None, text: str | None = None,
             offset: int = 0, limit: int = 100) -> dict[str, Any]:
    """``GET /api/runs/{run}/jobs``: one page of the jobs that match, in request order."""
    steps = fold.summary.steps
    needle = (text or "").lower()
    matched = []
    for info in fold.summary.jobs.values():
        if state and info.state != state:
            continue
        if step and step not in (info.step, steps.get(info.step)):
            continue
        if needle and needle not in info.job.lower() and needle not in info.tag.lower() \
                and needle not in steps.get(info.step, "").lower():
            continue
        matched.append(info)
    page = matched[max(0, offset):max(0, offset) + max(0, limit)]
    return {"total": len(matched), "offset": offset, "jobs": [_job_row(fold, info) for info in page]}


def _tail(path: Path) -> str:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - TAIL_BYTES))
        return f.read().decode("utf-8", errors="replace")


def _declared_streams(step: Any) -> dict[str, str | None]:
    """The literal ``stdout``/``stderr`` file names of a step's tool (None: not captured or
    an expression)."""
    process = getattr(step, "process", None)
    names: dict[str, str | None] = {}
    for key in ("stdout", "stderr"):
        value = getattr(process, key, None)
        names[key] = value if isinstance(value, str) and "$" not in value else None
        if names[key] is None:
            for out in getattr(process, "outputs", None) or []:
                if getattr(out, "type_", getattr(out, "type", None)) == key:
                    names[key] = ""  # captured under a generated name: found by the outputs
    return names


def _stream_file(workdir: str, name: str | None, key: str, outputs: dict[str, Any] | None) -> Path | None:
    if name:
        path = Path(workdir) / "out" / name
        return path if path.is_file() else None
    if name == "" and outputs:
        for value in outputs.values():
            if isinstance(value, dict) and value.get("class") == "File" and key in str(value.get("basename", "")):
                path = Path(str(value.get("path", "")))
                if path.is_file():
                    return path
    return None


def job_detail(fold: RunFold, job: str, step_def: Any = None) -> dict[str, Any] | None:
    """``GET /api/runs/{run}/jobs/{job}`` (None: no such job)."""
    info = fold.summary.jobs.get(job)
    if info is None:
        return None
    attempts = []
    for a in info.attempts:
        row = asdict(a)
        row["workdir"] = fold.workdirs.get((a.job, a.attempt, a.delivery))
        row["command"] = fold.commands.get((a.job, a.attempt, a.delivery))
        attempts.append(row)
    data = _job_row(fold, info)
    workdir = attempts[-1]["workdir"] if attempts else None
    recorded = next((a["command"] for a in reversed(attempts) if a["command"]), None)
    process = getattr(step_def, "process", None)
    base = getattr(process, "baseCommand", None)
    data.update({
        "inputs": info.inputs, "outputs": info.outputs, "attempts": attempts, "workdir": workdir,
        "requested_at": info.requested_at, "scheduled_at": info.scheduled_at, "rollbacks": info.rollbacks,
        "abandoned": info.abandoned,
        "command": recorded or ([base] if isinstance(base, str) else list(base or [])) or None,
        "command_note": None if recorded else "the tool's base command: no attempt has recorded its command line yet",
        "stdout_tail": None, "stderr_tail": None, "tail_note": None,
    })
    if workdir is None:
        data["tail_note"] = "the job has not started"
    elif not Path(workdir).is_dir():
        data["tail_note"] = f"the working directory {workdir} is not readable from this machine (or was removed)"
    else:
        names = _declared_streams(step_def) if step_def is not None else {"stdout": None, "stderr": None}
        for key in ("stdout", "stderr"):
            path = _stream_file(workdir, names.get(key), key, info.outputs)
            if path is not None:
                try:
                    data[f"{key}_tail"] = _tail(path)
                except OSError as exc:
                    data["tail_note"] = f"cannot read {path}: {exc.strerror}"
        if data["stdout_tail"] is None and data["stderr_tail"] is None and data["tail_note"] is None:
            data["tail_note"] = ("the tool does not capture its stdout/stderr into files (CWL 'stdout'/'stderr'): "
                                 "they went to the log of the process that ran it")
    return data


def graph_view(graph: Any, steps: dict[str, str]) -> dict[str, Any]:
    """``GET /api/runs/{run}/graph`` from a translated ``WorkflowGraph`` (or, when ``graph``
    is None, the recorded step names alone)."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, str]] = []
    names = {s.name: s.id for s in graph.steps.values()} if graph is not None else {v: k for k, v in steps.items()}
    workflows: dict[str, str] = {}

    def parent_of(name: str) -> str | None:
        parts = [p for p in name.split("/") if p]
        found = None
        for i in range(1, len(parts)):
            if parts[i - 1].startswith("__"):
                break
            prefix = "/" + "/".join(parts[:i])
            if prefix in names:
                continue
            if prefix not in workflows:
                workflows[prefix] = f"wf:{prefix}"
                nodes.append({"id": f"wf:{prefix}", "label": parts[i - 1], "kind": "workflow",
                              "parent": found, "step": None})
            found = workflows[prefix]
        return found

    if graph is None:
        for sid, name in steps.items():
            nodes.append({"id": sid, "label": name, "kind": "step", "parent": parent_of(name), "step": sid})
        return {"nodes": nodes, "edges": edges, "note": "the workflow document could not be loaded: steps only"}
    port_parent: dict[str, str | None] = {}
    for step in graph.steps.values():
        kind = "input" if step.kind == "input" else "step"
        parent = parent_of(step.name)
        nodes.append({"id": step.id, "label": step.name.rsplit("/", 1)[-1] or step.name, "name": step.name,
                      "kind": kind, "step_kind": step.kind, "parent": parent, "step": step.id})
        written = list(step.outputs.values()) + list(getattr(step, "skip_outputs", {}).values()) \
            + list(getattr(step, "size_ports", []))
        for port in written:
            port_parent.setdefault(port, parent)
            edges.append({"source": step.id, "target": port})
        for port in step.inputs.values():
            edges.append({"source": port, "target": step.id})
    for pid, port in graph.ports.items():
        nodes.append({"id": pid, "label": port.name.rsplit("/", 1)[-1] or port.name, "name": port.name,
                      "kind": "port", "parent": port_parent.get(pid), "step": None})
    for name, pid in graph.outputs.items():
        nodes.append({"id": f"out:{name}", "label": name, "kind": "output", "parent": None, "step": None})
        edges.append({"source": pid, "target": f"out:{name}"})
    seen: set[tuple[str, str]] = set()
    unique = []
    for e in edges:
        if (e["source"], e["target"]) not in seen:
            seen.add((e["source"], e["target"]))
            unique.append(e)
    return {"nodes": nodes, "edges": unique}
