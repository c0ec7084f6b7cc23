"""The event log over a real JetStream server: idempotent appends, OCC, ordered reads, follow, queries."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from events.codec import event_id
from events.log import EventLog, Record, run_subject, valid_id
from events.schema import JobStarted, RunStarted, RunSubmitted, StepFailed, StepTerminated, TokenEmitted
from streamflow.errors import ConcurrencyError, RunNotFoundError

DEADLINE = 10.0


def new_run() -> str:
    """A run id no other test uses."""
    return "t" + uuid.uuid4().hex[:12]


async def collect(log: EventLog, run_id: str, **kwargs: object) -> list[Record]:
    """Read a (finished) run's events, with a deadline."""
    async with asyncio.timeout(DEADLINE):
        return [r async for r in log.read(run_id, **kwargs)]  # type: ignore[arg-type]


async def test_append_with_the_same_key_is_stored_once(event_log: EventLog) -> None:
    """Appending the same fact twice returns duplicate=True with the first sequence and stores one event."""
    run = new_run()
    body = TokenEmitted(tag="0", value=1)
    first = await event_log.append(run, "port", "p0", body, producer="port:p0", key="0/0")
    again = await event_log.append(run, "port", "p0", body, producer="port:p0", key="0/0")
    assert not first.duplicate
    assert again.duplicate and again.stream_seq == first.stream_seq and again.event_id == first.event_id
    assert first.event_id == event_id(run, "port.p0", "TokenEmitted", "0/0")
    assert await event_log.count(run_subject(run)) == 1


async def test_a_different_key_is_a_different_event(event_log: EventLog) -> None:
    """Two facts of the same type on the same aggregate with different keys are both stored."""
    run = new_run()
    a = await event_log.append(run, "port", "p0", TokenEmitted(tag="0.0"), producer="x", key="0.0/0")
    b = await event_log.append(run, "port", "p0", TokenEmitted(tag="0.1"), producer="x", key="0.1/0")
    assert not a.duplicate and not b.duplicate and b.stream_seq > a.stream_seq
    assert await event_log.count(run_subject(run, "port", "p0")) == 2


async def test_expected_sequence_mismatch_raises_concurrency_error(event_log: EventLog) -> None:
    """A second writer that expects an empty subject (or a stale sequence) gets ConcurrencyError."""
    run = new_run()
    first = await event_log.append(run, "step", "s1", StepFailed(error="x"), producer="a", expected_last_seq=0)
    with pytest.raises(ConcurrencyError):
        await event_log.append(run, "step", "s1", StepTerminated(), producer="b", key="t", expected_last_seq=0)
    with pytest.raises(ConcurrencyError):
        await event_log.append(run, "step", "s1", StepTerminated(), producer="b", key="t",
                               expected_last_seq=first.stream_seq - 1)
    ok = await event_log.append(run, "step", "s1", StepTerminated(), producer="a", key="t",
                                expected_last_seq=first.stream_seq)
    assert not ok.duplicate
    assert await event_log.count(run_subject(run)) == 2


async def test_retried_guarded_append_whose_first_attempt_landed_is_a_duplicate(event_log: EventLog) -> None:
    """Re-sending an OCC-guarded append that already landed (lost ack) returns duplicate, not a conflict."""
    run = new_run()
    body = JobStarted(job="s1-0", attempt=1, worker="w")
    landed = await event_log.append(run, "job", "s1-0", body, producer="worker", key="1/1", expected_last_seq=0)
    retried = await event_log.append(run, "job", "s1-0", body, producer="worker", key="1/1", expected_last_seq=0)
    assert retried.duplicate
    assert retried.stream_seq == landed.stream_seq and retried.event_id == landed.event_id
    assert await event_log.count(run_subject(run)) == 1


async def test_read_yields_in_log_order_with_per_run_seq(event_log: EventLog) -> None:
    """read() yields a run's events in stream order, numbering them 1..n, with subjects and timestamps."""
    run, other = new_run(), new_run()
    appended = []
    for i in range(6):
        appended.append(await event_log.append(run, "port", f"p{i % 2}", TokenEmitted(tag=f"0.{i}", value=i),
                                               producer="x", key=str(i)))
        # Interleave another run's events: they must not show up nor shift the numbering.
        await event_log.append(other, "port", "p0", TokenEmitted(tag=f"0.{i}"), producer="x", key=str(i))
    records = await collect(event_log, run)
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r.stream_seq for r in records] == [a.stream_seq for a in appended]
    assert [r.body.value for r in records] == list(range(6))  # type: ignore[attr-defined]
    assert [r.agg_id for r in records] == ["p0", "p1"] * 3
    assert all(r.aggregate == "port" and r.envelope.run_id == run and r.time > 0 for r in records)
    assert [r.envelope.event_id for r in records] == [a.event_id for a in appended]


async def test_read_with_a_subject_filter_narrows_to_one_aggregate(event_log: EventLog) -> None:
    """A subject filter reads only the matching aggregate, still in order."""
    run = new_run()
    await event_log.append(run, "wf", None, RunSubmitted(name="n", workflow="w"), producer="cli", key="s")
    await event_log.append(run, "port", "p0", TokenEmitted(tag="0"), producer="x", key="0")
    await event_log.append(run, "wf", None, RunStarted(), producer="cli", key="st")
    records = await collect(event_log, run, subject_filter=run_subject(run, "wf"))
    assert [type(r.body).__name__ for r in records] == ["RunSubmitted", "RunStarted"]
    assert [r.agg_id for r in records] == [None, None]


async def test_read_from_a_stream_sequence_skips_earlier_events(event_log: EventLog) -> None:
    """read(from_stream_seq=n) starts at n; the per-run seq is unknown (0) there."""
    run = new_run()
    results = [await event_log.append(run, "port", "p0", TokenEmitted(tag=f"0.{i}"), producer="x", key=str(i))
               for i in range(4)]
    records = await collect(event_log, run, from_stream_seq=results[2].stream_seq)
    assert [r.stream_seq for r in records] == [results[2].stream_seq, results[3].stream_seq]
    assert all(r.seq == 0 for r in records)


async def test_read_from_past_the_last_event_returns_nothing(event_log: EventLog) -> None:
    """Reading (no follow) from after a run's last event yields nothing and returns (regression: hung)."""
    run = new_run()
    last = await event_log.append(run, "port", "p0", TokenEmitted(tag="0"), producer="x", key="0")
    await event_log.append(new_run(), "port", "p0", TokenEmitted(tag="0"), producer="x", key="0")
    async with asyncio.timeout(DEADLINE):
        records = [r async for r in event_log.read(run, from_stream_seq=last.stream_seq + 1)]
    assert records == []


async def test_follow_yields_events_appended_later(event_log: EventLog) -> None:
    """read(follow=True) first replays what is there, then yields new events as they are appended."""
    run = new_run()
    await event_log.append(run, "wf", None, RunSubmitted(name="n", workflow="w"), producer="cli", key="s")
    received: list[Record] = []
    got_first = asyncio.Event()
    got_all = asyncio.Event()

    async def follower() -> None:
        async for record in event_log.read(run, follow=True):
            received.append(record)
            got_first.set()
            if len(received) == 4:
                got_all.set()
                return

    async with asyncio.timeout(DEADLINE), asyncio.TaskGroup() as tg:
        tg.create_task(follower())
        await got_first.wait()
        for i in range(3):
            await event_log.append(run, "port", "p0", TokenEmitted(tag=f"0.{i}"), producer="x", key=str(i))
        await got_all.wait()
    assert [r.seq for r in received] == [1, 2, 3, 4]
    assert [type(r.body).__name__ for r in received] == ["RunSubmitted"] + ["TokenEmitted"] * 3


async def test_follow_on_an_empty_run_waits_for_its_first_event(event_log: EventLog) -> None:
    """Following a run that has no events yet does not fail: it yields the first event once it lands."""
    run = new_run()

    async def first_event() -> Record:
        async for record in event_log.read(run, follow=True):
            return record
        raise AssertionError("follow ended")

    async with asyncio.timeout(DEADLINE), asyncio.TaskGroup() as tg:
        task = tg.create_task(first_event())
        await asyncio.sleep(0)  # let the follower subscribe before the append (either order must work)
        await event_log.append(run, "wf", None, RunStarted(), producer="cli", key="st")
    assert isinstance(task.result().body, RunStarted)


async def test_reading_an_unknown_run_raises_run_not_found(event_log: EventLog) -> None:
    """read() of a run with no events raises RunNotFoundError naming the run."""
    run = new_run()
    with pytest.raises(RunNotFoundError, match=run):
        await collect(event_log, run)
    assert not await event_log.exists(run)


async def test_runs_lists_runs_in_submission_order(event_log: EventLog) -> None:
    """runs() lists every run with a wf aggregate, ordered by its first event; port-only runs are not runs."""
    first, second, no_wf = new_run(), new_run(), new_run()
    await event_log.append(first, "wf", None, RunSubmitted(name="a", workflow="w"), producer="cli", key="s")
    await event_log.append(no_wf, "port", "p0", TokenEmitted(tag="0"), producer="x", key="0")
    await event_log.append(second, "wf", None, RunSubmitted(name="b", workflow="w"), producer="cli", key="s")
    await event_log.append(first, "wf", None, RunStarted(), producer="cli", key="st")
    runs = await event_log.runs()
    assert first in runs and second in runs and no_wf not in runs
    assert runs.index(first) < runs.index(second)
    assert await event_log.exists(first) and not await event_log.exists(no_wf)


async def test_count_first_and_last(event_log: EventLog) -> None:
    """count() matches subject filters; first()/last() return a subject's ends (None when empty)."""
    run = new_run()
    a = await event_log.append(run, "wf", None, RunSubmitted(name="n", workflow="w"), producer="cli", key="s")
    await event_log.append(run, "port", "p0", TokenEmitted(tag="0"), producer="x", key="0")
    await event_log.append(run, "port", "p1", TokenEmitted(tag="0"), producer="x", key="0")
    c = await event_log.append(run, "wf", None, RunStarted(), producer="cli", key="st")
    assert await event_log.count(run_subject(run)) == 4
    assert await event_log.count(f"sf.ev.{run}.port.*") == 2
    assert await event_log.count(run_subject(run, "port", "p1")) == 1
    assert await event_log.count(run_subject(new_run())) == 0
    wf = run_subject(run, "wf")
    first, last = await event_log.first(wf), await event_log.last(wf)
    assert first is not None and last is not None
    assert first[0] == a.stream_seq and isinstance(first[1].body, RunSubmitted)
    assert last[0] == c.stream_seq and isinstance(last[1].body, RunStarted)
    assert await event_log.first(run_subject(run, "step", "s9")) is None
    assert await event_log.last(run_subject(run, "step", "s9")) is None


async def test_envelope_carries_producer_causation_and_epoch(event_log: EventLog) -> None:
    """What append was told (producer, causation, epoch) is what read returns, with a writer timestamp."""
    run = new_run()
    await event_log.append(run, "step", "s1", StepFailed(error="x"), producer="step:s1", causation_id="cause",
                           epoch=7)
    (record,) = await collect(event_log, run)
    env = record.envelope
    assert (env.producer, env.causation_id, env.epoch, env.run_id) == ("step:s1", "cause", 7, run)
    assert env.occurred_at > 0 and env.schema >= 1


def test_valid_ids_are_subject_safe() -> None:
    """Only [A-Za-z0-9_-]{1,128} ids are accepted as subject tokens."""
    assert valid_id("r0a-b_C")
    for bad in ("", "a.b", "a b", "a*", "a>", "é", "x" * 129):
        assert not valid_id(bad), bad
