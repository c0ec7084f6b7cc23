"""The host's routing index (``Actor.interest``) finds exactly the actors ``interested`` accepts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors._runtime import ActorHost, RunContext
from actors.port import PortActor
from actors.scheduler import SchedulerActor, local_capacity
from actors.step import make_step_actor
from actors.supervisor import RunSupervisor
from events.log import Record
from events.schema import Envelope, RunStarted
from streamflow.cli.engine import prepare

DATA = Path(__file__).resolve().parents[1] / "data"
BENCH = Path(__file__).resolve().parents[2] / "bench" / "workflows"


def _record(subject: str) -> Record:
    return Record(stream_seq=1, subject=subject,
                  envelope=Envelope(event_id="x", run_id="r1", producer="t", body=RunStarted()))


@pytest.mark.parametrize("kind", ["scatter", "chain"])
def test_indexed_routes_equal_asking_every_actor(tmp_path: Path, kind: str) -> None:
    import sys

    sys.path.insert(0, str(BENCH))
    from generate import generate

    workflow, job = generate(kind, 5, tmp_path)
    graph = prepare(str(workflow), str(job)).graph

    async def _build() -> list[Any]:
        ctx = RunContext(run_id="r1", nc=None, log=None, graph=graph, workdir=str(tmp_path),  # type: ignore[arg-type]
                         outdir=str(tmp_path))
        actors: list[Any] = [PortActor(ctx, pid, graph.producers(pid)) for pid in graph.ports]
        actors += [make_step_actor(ctx, step) for step in graph.steps.values()]
        actors += [SchedulerActor(ctx, {"__LOCAL__": [local_capacity()]}), RunSupervisor(ctx, asyncio.Event())]
        return actors

    actors = asyncio.run(_build())
    host = ActorHost(actors[0].ctx, actors)
    subjects = {"sf.ev.r1.wf", "sf.ev.r1.fence.steps", "sf.ev.r1.ckpt.ports", "sf.ev.r1.deploy.__LOCAL__"}
    for step in graph.steps.values():
        subjects.add(f"sf.ev.r1.step.{step.id}")
        for agg in ("alloc", "data", "job", "recovery"):
            subjects.update({f"sf.ev.r1.{agg}.{step.id}-0", f"sf.ev.r1.{agg}.{step.id}-0_3",
                             f"sf.ev.r1.{agg}.{step.id}0-1", f"sf.ev.r1.{agg}.x{step.id}-1"})
    subjects.update(f"sf.ev.r1.port.{pid}" for pid in graph.ports)
    routed_somewhere = 0
    for subject in sorted(subjects):
        record = _record(subject)
        expected = [a for a in actors if a.interested(record)]
        assert host._route(record) == expected, subject
        routed_somewhere += bool(expected)
    assert host._anywhere, "the singletons (scheduler, supervisor) take every new subject"
    assert host._by_prefix, "execute steps are indexed by their jobs' prefix"
    assert routed_somewhere > len(graph.steps)
