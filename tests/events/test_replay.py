"""The fast catch-up read (events/replay.py): the same records as the ordered consumer, nothing
skipped or repeated when it stops early, and the rest of the client left alone."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

import events.replay as replay
from events.log import EVENTS_STREAM, EventLog, Record, run_subject
from events.schema import RunSubmitted, TokenEmitted

DEADLINE = 20.0


def new_run() -> str:
    """A run id no other test uses."""
    return "r" + uuid.uuid4().hex[:12]


async def populate(log: EventLog, run: str, tokens: int, ports: int = 3) -> None:
    """A run with a ``RunSubmitted`` and ``tokens`` tokens spread over ``ports`` port subjects."""
    await log.append(run, "wf", None, RunSubmitted(name="r", workflow="w"), producer="t", key="s")
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with gate:
            await log.append(run, "port", f"p{i % ports}", TokenEmitted(tag=f"0.{i}", value=i), producer="t",
                             key=str(i))

    await asyncio.gather(*(one(i) for i in range(tokens)))


async def ordered(log: EventLog, run: str, start: int = 1) -> list[Record]:
    """The same read through the ordered push consumer alone (the reference)."""
    async with asyncio.timeout(DEADLINE):
        return [r async for r in log._follow(run_subject(run), start, follow=False, ordinal=0 if start == 1 else None)]


async def fast(log: EventLog, run: str, **kwargs: Any) -> list[Record]:
    async with asyncio.timeout(DEADLINE):
        return [r async for r in log.read(run, **kwargs)]


def shape(records: list[Record]) -> list[tuple[int, str, int, str, Any]]:
    return [(r.stream_seq, r.subject, r.seq, r.envelope.event_id, r.body) for r in records]


async def test_catch_up_reads_what_the_ordered_consumer_reads(event_log: EventLog, monkeypatch: Any) -> None:
    """Several pull batches (a small BATCH), from the start and from a sequence: same records, same order."""
    monkeypatch.setattr(replay, "BATCH", 16)
    run = new_run()
    await populate(event_log, run, 150)
    reference = await ordered(event_log, run)
    records = await fast(event_log, run)
    assert len(records) == 151
    assert shape(records) == shape(reference)
    assert [r.seq for r in records] == list(range(1, 152))
    assert [r.time for r in records] == [ref.time for ref in reference] and all(r.time > 0 for r in records)
    middle = records[70].stream_seq
    tail = await fast(event_log, run, from_stream_seq=middle)
    assert shape(tail) == shape(await ordered(event_log, run, middle))
    assert tail[0].stream_seq == middle and all(r.seq == 0 for r in tail)


async def test_an_early_stop_hands_over_without_skipping_or_repeating(event_log: EventLog,
                                                                      monkeypatch: Any) -> None:
    """A catch-up that breaks off (here: a 'gap' after 40 deliveries) is continued by the ordered consumer."""
    monkeypatch.setattr(replay, "BATCH", 16)
    original = replay._Pull.on_msg

    def flaky(self: replay._Pull, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        if self.dseq > 40 and reply.startswith(b"$JS.ACK."):
            self.broken = "simulated gap"
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)
            return
        original(self, subject, reply, data, headers)

    monkeypatch.setattr(replay._Pull, "on_msg", flaky)
    run = new_run()
    await populate(event_log, run, 100)
    records = await fast(event_log, run)
    assert shape(records) == shape(await ordered(event_log, run))
    assert [r.seq for r in records] == list(range(1, 102))


async def test_a_client_that_cannot_be_hooked_reads_the_ordinary_way(event_log: EventLog, monkeypatch: Any) -> None:
    monkeypatch.setattr(replay, "raw_sinks", lambda nc: None)
    run = new_run()
    await populate(event_log, run, 20)
    assert shape(await fast(event_log, run)) == shape(await ordered(event_log, run))


async def test_follow_catches_up_then_yields_new_events(event_log: EventLog, monkeypatch: Any) -> None:
    monkeypatch.setattr(replay, "BATCH", 8)
    run = new_run()
    await populate(event_log, run, 30)
    seen: list[Record] = []

    async def reader() -> None:
        async for record in event_log.read(run, follow=True):
            seen.append(record)
            if len(seen) == 36:
                return

    task = asyncio.create_task(reader())
    async with asyncio.timeout(DEADLINE):
        while len(seen) < 31:
            await asyncio.sleep(0.01)
        for i in range(5):
            await event_log.append(run, "port", "p9", TokenEmitted(tag=f"1.{i}", value=i), producer="t", key=f"n{i}")
        await task
    assert [r.seq for r in seen] == list(range(1, 37))
    assert [r.body.tag for r in seen[31:]] == [f"1.{i}" for i in range(5)]  # type: ignore[union-attr]
    assert len({r.stream_seq for r in seen}) == 36


async def test_other_subscriptions_of_the_client_are_untouched(event_log: EventLog) -> None:
    """Once the client is hooked, plain messages (with headers) still reach their subscribers intact."""
    run = new_run()
    await populate(event_log, run, 5)
    await fast(event_log, run)
    assert "_process_msg" not in vars(event_log.nc)  # unhooked once no catch-up is running
    got: asyncio.Queue[Any] = asyncio.Queue()
    sub = await event_log.nc.subscribe("sftest.plain", cb=got.put)
    reading = event_log.read(run, follow=True).__aiter__()
    first = await reading.__anext__()  # a catch-up is under way: the client is hooked
    assert first.seq == 1 and "_process_msg" in vars(event_log.nc)
    await event_log.nc.publish("sftest.plain", b"hello", headers={"A": "b"})
    async with asyncio.timeout(DEADLINE):
        msg = await got.get()
    await reading.aclose()  # type: ignore[attr-defined]
    await sub.unsubscribe()
    assert msg.data == b"hello" and msg.headers == {"A": "b"}
    assert "_process_msg" not in vars(event_log.nc)
    async with asyncio.timeout(DEADLINE):  # the catch-up's consumer is deleted (not waited for)
        while any(c.config.filter_subject == run_subject(run) for c in await event_log.js.consumers_info(EVENTS_STREAM)):
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("follow", [False, True])
async def test_reading_past_the_end(event_log: EventLog, follow: bool) -> None:
    """From past the last event: nothing without follow; with follow, the next event appended."""
    run = new_run()
    await populate(event_log, run, 3)
    last = (await fast(event_log, run))[-1].stream_seq
    if not follow:
        assert await fast(event_log, run, from_stream_seq=last + 1) == []
        return
    async with asyncio.timeout(DEADLINE):
        reading = event_log.read(run, follow=True, from_stream_seq=last + 1).__aiter__()
        nxt = asyncio.ensure_future(reading.__anext__())
        await asyncio.sleep(0.2)
        await event_log.append(run, "port", "p0", TokenEmitted(tag="x", value=0), producer="t", key="x")
        record = await nxt
        await reading.aclose()  # type: ignore[attr-defined]
    assert record.stream_seq > last and record.body.tag == "x"  # type: ignore[union-attr]


@pytest.mark.parametrize("fast_path", [True, False])
async def test_read_object_returns_the_stored_bytes(event_log: EventLog, monkeypatch: Any, fast_path: bool) -> None:
    """A multi-chunk object reads back byte for byte, through the catch-up or (when it yields nothing) the store."""
    import nats.js.object_store

    import events.log as log_module

    if fast_path:
        async def refused(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the fast path fell back on ObjectStore.get")

        monkeypatch.setattr(nats.js.object_store.ObjectStore, "get", refused)
    else:
        async def nothing(*args: Any) -> Any:
            return
            yield

        monkeypatch.setattr(log_module, "catch_up", nothing)
    bucket = "sftest_objects"
    try:
        store = await event_log.js.object_store(bucket)
    except Exception:
        store = await event_log.js.create_object_store(bucket)
    blob = bytes(range(256)) * 2000 + b"tail"  # ~500 KB: several 128 KiB chunks
    name = "o" + uuid.uuid4().hex[:8]
    await store.put(name, blob)
    async with asyncio.timeout(DEADLINE):
        assert await event_log.read_object(bucket, name) == blob
        await store.put(name, b"second version")  # the latest version, not the first chunks of the subject
        assert await event_log.read_object(bucket, name) == b"second version"


async def test_concurrent_catch_ups_on_one_client(event_log: EventLog, monkeypatch: Any) -> None:
    """Several reads at once on one client (starting and ending at different times) all read everything."""
    monkeypatch.setattr(replay, "BATCH", 8)
    handed_over: list[int] = []
    original = EventLog._follow

    def follow(self: EventLog, subject: str, start: int, **kwargs: Any) -> Any:
        handed_over.append(start)
        return original(self, subject, start, **kwargs)

    runs = [new_run() for _ in range(4)]
    for i, run in enumerate(runs):
        await populate(event_log, run, 10 + 15 * i)
    monkeypatch.setattr(EventLog, "_follow", follow)
    async with asyncio.timeout(DEADLINE):
        results = await asyncio.gather(*(fast(event_log, run) for run in runs * 2))
    assert handed_over == []  # every read caught up on its own (no sink lost to another's unhooking)
    monkeypatch.undo()
    for run, records in zip(runs * 2, results, strict=True):
        assert shape(records) == shape(await ordered(event_log, run))
    assert "_process_msg" not in vars(event_log.nc)


async def test_a_catch_up_starting_while_another_ends_keeps_its_sink(event_log: EventLog, monkeypatch: Any) -> None:
    """B subscribes while A ends and unhooks the client: B hooks it again (no fall-back, nothing lost)."""
    monkeypatch.setattr(replay, "STALL", 1.0)
    handed_over: list[int] = []
    original_follow = EventLog._follow

    def follow(self: EventLog, subject: str, start: int, **kwargs: Any) -> Any:
        handed_over.append(start)
        return original_follow(self, subject, start, **kwargs)

    monkeypatch.setattr(EventLog, "_follow", follow)
    first, second = new_run(), new_run()
    await populate(event_log, first, 20)
    await populate(event_log, second, 20)
    nc = event_log.nc
    original_subscribe = nc.subscribe
    a_done = asyncio.Event()
    inboxes = 0

    async def subscribe(subject: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal inboxes
        sub = await original_subscribe(subject, *args, **kwargs)
        if kwargs.get("cb") is None and not subject.endswith("*"):
            inboxes += 1
            if inboxes == 2:  # B's catch-up: let A end (and unhook the client) first
                await a_done.wait()
        return sub

    monkeypatch.setattr(nc, "subscribe", subscribe)
    async with asyncio.timeout(DEADLINE):
        reading = event_log.read(first).__aiter__()
        await reading.__anext__()  # A is under way, its sink in the table
        b = asyncio.ensure_future(fast(event_log, second))
        while inboxes < 2:
            await asyncio.sleep(0.01)
        await reading.aclose()  # type: ignore[attr-defined]
        assert "_process_msg" not in vars(nc)  # A was the last sink: unhooked
        a_done.set()
        records = await b
    assert handed_over == [] and len(records) == 21
