"""The filters of ``streamflow events`` and the JSON form of an event (one implementation,
used by the CLI and by the UI's ``/api/runs/{run}/events``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.js import api

from events.codec import decode, event_type
from events.log import EVENTS_STREAM, EventLog, Record, run_subject
from events.replay import server_time
from events.schema import RunCancelled, RunCompleted, RunFailed, RunSubmitted
from streamflow.errors import RunNotFoundError

__all__ = ["EventFilter", "Page", "is_final", "read_page", "record_to_json", "resolve_filter", "step_ids",
           "touches_step"]


def record_to_json(record: Record) -> dict[str, Any]:
    """The ``--json`` form of an event: seq, run_id, type, time and the event's fields."""
    body = msgspec.to_builtins(record.body)
    out: dict[str, Any] = {
        "seq": record.seq or record.stream_seq,
        "stream_seq": record.stream_seq,
        "run_id": record.envelope.run_id,
        "type": event_type(record.body),
        "time": record.time or record.envelope.occurred_at / 1e9,
        "subject": record.subject,
        "aggregate": record.aggregate,
        "id": record.agg_id,
        "event_id": record.envelope.event_id,
        "actor": record.envelope.producer,
        "causation_id": record.envelope.causation_id,
        "epoch": record.envelope.epoch,
    }
    reserved = {"seq", "stream_seq", "run_id", "type", "time"}
    for key, value in body.items():
        if key not in reserved:
            out[key] = value  # the event's own fields win over envelope metadata
    return out


def touches_step(record: Record, ids: set[str]) -> bool:
    """Whether ``record`` is about one of the steps ``ids`` (its jobs, data, allocations)."""
    if record.aggregate == "step":
        return record.agg_id in ids
    agg_id = record.agg_id or ""
    if record.aggregate in ("alloc", "job", "data", "recovery"):
        return agg_id.split("-")[0] in ids
    producer = getattr(record.body, "producer", None)
    return isinstance(producer, str) and producer in ids


def step_ids(submitted: RunSubmitted, step: str) -> set[str]:
    """The ids of the run's steps whose id or name is ``step`` (empty: none)."""
    return {sid for sid, name in submitted.steps.items() if step in (sid, name)}


@dataclass
class EventFilter:
    """What ``events --type/--step/--since`` keep.

    Attributes:
        types: event types kept (empty: every type).
        steps: step ids kept (empty: every step); see :func:`step_ids`.
        since: only events after this run sequence.
    """

    types: set[str] = field(default_factory=set)
    steps: set[str] = field(default_factory=set)
    since: int = 0

    def keeps(self, record: Record) -> bool:
        """Whether ``record`` passes the filter."""
        if record.seq and record.seq <= self.since:
            return False
        if self.types and event_type(record.body) not in self.types:
            return False
        return not (self.steps and not touches_step(record, self.steps))


async def resolve_filter(log_: EventLog, run_id: str, *, types: Iterable[str] = (), step: str | None = None,
                         since: int = 0) -> EventFilter:
    """Build the filter of a run's events.

    Raises:
        RunNotFoundError: no such run.
        ValueError: the run has no step ``step``.
    """
    ids: set[str] = set()
    if step:
        first = await log_.first(run_subject(run_id, "wf"))
        if first is None or not isinstance(first[1].body, RunSubmitted):
            raise RunNotFoundError(f"no run {run_id!r} in the event log")
        ids = step_ids(first[1].body, step)
        if not ids:
            raise ValueError(f"run {run_id} has no step {step!r}")
    return EventFilter(types=set(types), steps=ids, since=max(0, since))


@dataclass
class Page:
    """One page of a run's events.

    Attributes:
        records: the events kept, in log order, numbered by their run sequence.
        next_since: the run sequence to pass as ``since`` for the next page (the last
            event read, kept or not).
        last_stream_seq: the stream sequence of that event (0: none read).
        scanned: how many events were read for this page.
    """

    records: list[Record]
    next_since: int
    last_stream_seq: int
    scanned: int


async def read_page(log_: EventLog, run_id: str, keep: EventFilter, *, limit: int,
                    start: tuple[int, int] = (0, 0), batch: int = 256) -> Page:
    """Up to ``limit`` of a run's events that pass ``keep``, reading from a known position.

    ``start`` is ``(n, stream_seq)``: the run sequence of one of the run's events and its
    stream sequence (``(0, 0)``: the run's start). Reading begins right after it, on a pull
    consumer of the run's subjects, so a page costs what it reads (the events after ``n``
    up to the page's last), not the run's events before it. ``n`` should be at most
    ``keep.since``; events up to ``keep.since`` are read and skipped.
    """
    ordinal, after = start
    page = Page(records=[], next_since=max(keep.since, ordinal), last_stream_seq=after, scanned=0)
    config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=after + 1,
                                ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True)
    sub = await log_.js.pull_subscribe(run_subject(run_id), stream=EVENTS_STREAM, config=config)
    name = ""
    try:
        info = await sub.consumer_info()
        name = info.name
        pending = int(info.num_pending or 0)
        while pending and len(page.records) < limit:
            for msg in await sub.fetch(min(batch, pending), timeout=5.0):
                meta = msg.metadata
                ordinal += 1
                page.scanned += 1
                pending = meta.num_pending
                page.next_since, page.last_stream_seq = max(keep.since, ordinal), meta.sequence.stream
                try:
                    record = Record(stream_seq=meta.sequence.stream, subject=msg.subject, envelope=decode(msg.data),
                                    seq=ordinal, time=server_time(msg.reply))
                except Exception:  # an event this version cannot read: counted, not shown
                    continue
                if keep.keeps(record):
                    page.records.append(record)
                    if len(page.records) >= limit:
                        break
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if name:
            with contextlib.suppress(Exception):
                await log_.js.delete_consumer(EVENTS_STREAM, name)
    return page


async def is_final(log_: EventLog, record: Record) -> bool:
    """Whether ``record`` ends its run: a RunCompleted/Failed/Cancelled that is the last
    event of the run's lifecycle (a cancelled run that was resumed goes on)."""
    if not isinstance(record.body, RunCompleted | RunFailed | RunCancelled):
        return False
    last = await log_.last(run_subject(record.envelope.run_id, "wf"))
    return last is not None and int(last[0]) == record.stream_seq
