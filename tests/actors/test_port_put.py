"""Putting tokens on a port: directly when its actor is in this process, by request otherwise.

Both ways go through the port actor (the only writer of the port's subject): the same
``TokenEmitted``, the same deduplication by tag, the same refusal once the port has
terminated. Only the way there differs, which the tests check by watching the port's
request subject.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from actors._runtime import RunContext
from actors.port import PortActor, PutRequest, put_subject, put_token
from events.log import EventLog
from events.schema import PortTerminated, StepTerminated, TokenEmitted
from streamflow.errors import StreamFlowError
from streamflow.workflow.graph import WorkflowGraph


async def _port(event_log: EventLog, run_id: str) -> tuple[RunContext, PortActor, list[Any]]:
    """A started, live port actor ``p1`` (producer ``s1``) and a spy on its request subject."""
    ctx = RunContext(run_id=run_id, nc=event_log.nc, log=event_log, graph=WorkflowGraph(name="t"),
                     workdir="/tmp", outdir="/tmp")
    port = PortActor(ctx, "p1", ["s1"])
    port.replaying = False
    await port.start()
    await port.react()  # live: ready for puts
    seen: list[Any] = []

    async def _spy(msg: Any) -> None:
        seen.append(msg)

    spy = await event_log.nc.subscribe(put_subject(run_id, "p1"), cb=_spy)
    seen.append(spy)  # first item: the subscription itself (unsubscribed by the test)
    return ctx, port, seen


async def _tokens(event_log: EventLog, run_id: str) -> list[TokenEmitted]:
    return [r.body async for r in event_log.read(run_id) if isinstance(r.body, TokenEmitted)]


async def test_a_producer_in_the_port_actors_process_puts_directly(event_log: EventLog) -> None:
    ctx, port, seen = await _port(event_log, "rputlocal1")
    spy = seen.pop(0)
    try:
        assert ctx.local_ports["p1"] == port.put_local
        seq = await put_token(ctx, "p1", PutRequest(tag="0", value={"a": [1, 2]}, producer="s1", job="s1-0"))
        again = await put_token(ctx, "p1", PutRequest(tag="0", value="ignored", producer="s1"))
        await event_log.nc.flush()
        await asyncio.sleep(0.05)
        assert seen == [], "no request went through the bus"
        assert again == seq, "a repeated put of a tag is the same token"
        tokens = await _tokens(event_log, "rputlocal1")
        assert [(t.tag, t.value, t.producer, t.job) for t in tokens] == [("0", {"a": [1, 2]}, "s1", "s1-0")]
        assert port.tokens == {("0", 0): seq} and port.last_seq == seq
    finally:
        await spy.unsubscribe()
        await port.stop()
    assert "p1" not in ctx.local_ports, "a stopped port actor is no longer reachable directly"


async def test_a_producer_elsewhere_puts_through_the_bus(event_log: EventLog) -> None:
    ctx, port, seen = await _port(event_log, "rputremote1")
    spy = seen.pop(0)
    elsewhere = dataclasses.replace(ctx, local_ports={})  # a steps-only host: no port actor here
    try:
        seq = await put_token(elsewhere, "p1", PutRequest(tag="0", value="v", producer="s1"))
        again = await put_token(elsewhere, "p1", PutRequest(tag="0", value="v", producer="s1"))
        await asyncio.sleep(0.05)
        assert len(seen) == 2, "both puts were requests on the bus"
        assert again == seq
        assert [(t.tag, t.value) for t in await _tokens(event_log, "rputremote1")] == [("0", "v")]
    finally:
        await spy.unsubscribe()
        await port.stop()


@pytest.mark.parametrize("local", [True, False])
async def test_a_terminated_port_refuses_tokens_either_way(event_log: EventLog, local: bool) -> None:
    run_id = f"rputterm{int(local)}"
    ctx, port, seen = await _port(event_log, run_id)
    spy = seen.pop(0)
    try:
        await event_log.append(run_id, "step", "s1", StepTerminated(status="COMPLETED"), producer="t", key="t")
        (record,) = [r async for r in event_log.read(run_id) if isinstance(r.body, StepTerminated)]
        port.apply(record)
        await port.react()  # every producer terminated: PortTerminated
        assert port.terminated
        caller = ctx if local else dataclasses.replace(ctx, local_ports={})
        with pytest.raises(StreamFlowError, match="port p1 refused token 1: port p1 is terminated"):
            await put_token(caller, "p1", PutRequest(tag="1", value="late", producer="s1"), deadline=5)
        bodies = [r.body async for r in event_log.read(run_id)]
        assert [type(b) for b in bodies] == [StepTerminated, PortTerminated]
    finally:
        await spy.unsubscribe()
        await port.stop()
