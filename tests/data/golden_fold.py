"""Replay a golden event log through the current codec, RunSummary and every actor's fold.

Shared by ``tests/events/test_golden.py`` (which asserts) and ``capture_golden.py`` (which
records the expected values). Folding is pure: no bus, no I/O, no side effects.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from actors._runtime import Actor, RunContext
from actors.data_manager import DataManagerActor
from actors.failure_manager import FailureManagerActor, RetrySettings
from actors.port import PortActor
from actors.scheduler import SchedulerActor, local_capacity
from actors.step import StepActor, make_step_actor
from actors.supervisor import RunSupervisor
from events.codec import decode, event_type
from events.log import Record
from events.projections import RunSummary
from events.schema import Envelope, RunSubmitted
from streamflow.workflow.graph import WorkflowGraph

__all__ = ["FoldedRun", "expected_values", "fold", "load_records"]


def load_records(path: Path) -> list[Record]:
    """Decode every line with the current codec: JSON -> builtins -> MessagePack -> ``events.codec.decode``.

    Going through ``decode`` applies the registered upcasters; ``msgspec.convert`` must agree.
    """
    records = []
    for seq, line in enumerate(path.read_text().splitlines(), start=1):
        raw = json.loads(line)
        envelope = decode(msgspec.msgpack.encode(raw["envelope"]))
        assert envelope == msgspec.convert(raw["envelope"], Envelope) or raw["envelope"]["body"]["type"] != (
            event_type(envelope.body)), f"{path.name}:{seq}: codec and convert disagree"
        _assert_fields_kept(raw["envelope"], msgspec.to_builtins(envelope), f"{path.name}:{seq}")
        records.append(Record(stream_seq=raw["stream_seq"], subject=raw["subject"], envelope=envelope, seq=seq))
    return records


def _assert_fields_kept(old: Any, new: Any, where: str) -> None:
    """Every stored field survives decoding with the same value (new defaulted fields may appear)."""
    if isinstance(old, dict):
        assert isinstance(new, dict), f"{where}: {old!r} became {new!r}"
        for key, value in old.items():
            assert key in new, f"{where}: field {key!r} was dropped by the current schema"
            _assert_fields_kept(value, new[key], f"{where}.{key}")
    elif isinstance(old, list):
        assert isinstance(new, list) and len(new) == len(old), f"{where}: {old!r} became {new!r}"
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _assert_fields_kept(a, b, f"{where}[{i}]")
    else:
        assert old == new, f"{where}: {old!r} became {new!r}"


@dataclass
class FoldedRun:
    """The result of folding a golden log."""

    records: list[Record]
    graph: WorkflowGraph
    summary: RunSummary
    supervisor: RunSupervisor
    steps: list[StepActor]
    ports: list[PortActor]
    others: dict[str, Actor] = field(default_factory=dict)


def _graph(records: list[Record], workflow: Path) -> WorkflowGraph:
    from streamflow.cwl.loader import load_document
    from streamflow.cwl.translator import translate

    submitted = records[0].body
    assert isinstance(submitted, RunSubmitted), "a run's log starts with RunSubmitted"
    loaded = load_document(str(workflow))
    return translate(loaded.process, cwl_version=loaded.cwl_version, name=submitted.name,
                     job_order=submitted.inputs)


def fold(path: Path, workflow: Path) -> FoldedRun:
    """Fold a golden log with RunSummary and with every actor of the run's graph (rebuilt from ``workflow``)."""
    records = load_records(path)
    run_id = records[0].envelope.run_id
    graph = _graph(records, workflow)
    ctx = RunContext(run_id=run_id, nc=None, log=None, graph=graph, workdir="", outdir="")  # type: ignore[arg-type]
    supervisor = RunSupervisor(ctx, asyncio.Event())
    ports = [PortActor(ctx, pid, graph.producers(pid)) for pid in graph.ports]
    steps = [make_step_actor(ctx, step) for step in graph.steps.values()]
    others: dict[str, Actor] = {
        "scheduler": SchedulerActor(ctx, {"__LOCAL__": [local_capacity()]}),
        "data_manager": DataManagerActor(ctx),
        "failure_manager": FailureManagerActor(ctx, RetrySettings()),
    }
    actors: list[Actor] = [*ports, *steps, *others.values(), supervisor]
    summary = RunSummary(run_id=run_id)
    for record in records:
        summary.apply(record)
        for actor in actors:
            if actor.interested(record):
                actor.apply(record)
    return FoldedRun(records, graph, summary, supervisor, steps, ports, others)


def expected_values(state: FoldedRun) -> dict[str, Any]:
    """The values pinned in ``*.expected.json``."""
    summary = state.summary.to_dict()
    for volatile in ("submitted_at", "ended_at", "duration"):
        summary.pop(volatile)
    final = state.supervisor.final
    scheduler = state.others["scheduler"]
    data = state.others["data_manager"]
    failure = state.others["failure_manager"]
    return {
        "run_id": state.summary.run_id,
        "events": len(state.records),
        "event_types": dict(sorted(Counter(event_type(r.body) for r in state.records).items())),
        "summary": summary,
        "final": type(final).__name__,
        "outputs": msgspec.to_builtins(getattr(final, "outputs", None)),
        "steps_terminated": sorted(s.step.name for s in state.steps if s.terminated),
        "steps_failed": sorted(s.step.name for s in state.steps if s.failed),
        "ports_terminated": sorted(state.graph.ports[p.port_id].name for p in state.ports if p.terminated),
        "port_tokens": {state.graph.ports[p.port_id].name: len(p.tokens) for p in state.ports},
        "allocations": len(scheduler.allocations),  # type: ignore[attr-defined]
        "pending_allocations": len(scheduler.pending),  # type: ignore[attr-defined]
        "registered_jobs": len(data.registered),  # type: ignore[attr-defined]
        "staged_jobs": len(data.staged),  # type: ignore[attr-defined]
        "registered_paths": len(data.registry),  # type: ignore[attr-defined]
        "failures_decided": len(failure.decided),  # type: ignore[attr-defined]
    }
