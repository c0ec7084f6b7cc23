"""The append-only event log on NATS JetStream.

One stream, ``SF_EVENTS``, holds every run's events on subjects
``sf.ev.<run>.<aggregate>[.<id>]``; its sequence is the authoritative order. Appends are
idempotent (deterministic ``Nats-Msg-Id``) and can be guarded per subject with
``Nats-Expected-Last-Subject-Sequence`` (one writer per aggregate), or *fenced*: checked
by the server against the last sequence of a fence subject ``sf.ev.<run>.fence.<group>``
(``Nats-Expected-Last-Subject-Sequence-Subject``), which the holder of the group's lease
wrote when it took the lease; once a newer holder writes its own fence, every append of
the old one is refused (:class:`~streamflow.errors.FencedError`). A publish that times
out has an *unknown* outcome: it is retried with the same id until the server answers.

A second stream, ``SF_TASKS`` (work-queue retention), carries job tasks to executor
workers: ``sf.task.<deployment>.<run>``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import re
import signal
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client as NATS
from nats.js import api
from nats.js.client import JetStreamContext

from events.backoff import Backoff
from events.codec import decode, encode, event_id, event_type
from events.replay import catch_up, server_time
from events.schema import Envelope, Event, EventBody
from streamflow.errors import BusError, ConcurrencyError, EventLogError, FencedError, RunNotFoundError

__all__ = [
    "EVENTS_STREAM",
    "TASKS_STREAM",
    "AppendResult",
    "EventLog",
    "Fence",
    "Record",
    "fence_subject",
    "run_subject",
    "valid_id",
]

def _crash_points() -> dict[str, int]:
    """Parse ``STREAMFLOW_CRASH_AFTER``: ``Type[:n][,Type[:n]...]`` (tests of crash recovery).

    After the n-th successful append of an event of that type (default the first), the
    process kills itself with SIGKILL: a deterministic crash right after a fact was
    recorded and before anything else happens.
    """
    spec = os.environ.get("STREAMFLOW_CRASH_AFTER", "")
    points: dict[str, int] = {}
    for item in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = item.partition(":")
        points[name] = int(count or 1)
    return points


_CRASH_POINTS = _crash_points()
_crash_counts: dict[str, int] = {}


def _maybe_crash(kind: str) -> None:
    target = _CRASH_POINTS.get(kind)
    if target is None:
        return
    _crash_counts[kind] = _crash_counts.get(kind, 0) + 1
    if _crash_counts[kind] >= target:
        os.kill(os.getpid(), signal.SIGKILL)


EVENTS_STREAM = "SF_EVENTS"
TASKS_STREAM = "SF_TASKS"

#: What a leader election (or a server restart) looks like to a JetStream request.
_ELECTION: tuple[type[Exception], ...] = (
    nats.errors.TimeoutError, nats.errors.NoRespondersError, nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
)
#: ... and to a publish, whose outcome is then unknown: retried with the same message id.
_UNKNOWN_OUTCOME: tuple[type[Exception], ...] = (*_ELECTION, nats.errors.ConnectionClosedError)
_ID = re.compile(r"^[A-Za-z0-9_-]+$")


def valid_id(value: str) -> bool:
    """Whether ``value`` can be used as a subject token (run, step, port or job id)."""
    return bool(_ID.match(value)) and len(value) <= 128


def run_subject(run_id: str, aggregate: str | None = None, agg_id: str | None = None) -> str:
    """Return the subject of an aggregate (or the wildcard of the whole run).

    Raises:
        ValueError: ``run_id`` is not a valid subject token (:func:`valid_id`).
    """
    if not valid_id(run_id):  # '>', '*' or '.' would address other runs' subjects
        raise ValueError(f"invalid run id {run_id[:140]!r}")
    if aggregate is None:
        return f"sf.ev.{run_id}.>"
    if agg_id is None:
        return f"sf.ev.{run_id}.{aggregate}"
    return f"sf.ev.{run_id}.{aggregate}.{agg_id}"


def fence_subject(run_id: str, group: str) -> str:
    """The fence subject of an actor group of a run (written once per lease holder)."""
    return run_subject(run_id, "fence", group)


@dataclass(frozen=True)
class Fence:
    """A writer's fencing token: the sequence of the fence event its lease holder wrote.

    Attributes:
        subject: the fence subject (``sf.ev.<run>.fence.<group>``).
        seq: the stream sequence of this holder's fence event there.
        epoch: the holder's lease revision (written into its envelopes).
    """

    subject: str
    seq: int
    epoch: int = 0


@dataclass(frozen=True)
class Record:
    """An event as read from the log.

    Attributes:
        stream_seq: the global stream sequence (authoritative order).
        subject: the subject it was written on.
        envelope: the decoded envelope.
        seq: the event's position in its run, 1-based, when read from the run's start
            (0 when unknown).
        time: server-side timestamp (seconds since the epoch).
    """

    stream_seq: int
    subject: str
    envelope: Envelope
    seq: int = 0
    time: float = 0.0

    @property
    def aggregate(self) -> str:
        """The aggregate kind (``wf``, ``step``, ``port``...)."""
        return self.subject.split(".")[3]

    @property
    def agg_id(self) -> str | None:
        """The aggregate id, if any."""
        parts = self.subject.split(".")
        return parts[4] if len(parts) > 4 else None

    @property
    def body(self) -> Event:
        """The event payload."""
        return self.envelope.body


@dataclass(frozen=True)
class AppendResult:
    """What an append returned.

    Attributes:
        stream_seq: the sequence of the stored event.
        event_id: its id.
        duplicate: True when the event was already stored (deduplicated).
    """

    stream_seq: int
    event_id: str
    duplicate: bool


class EventLog:
    """The event log API: setup, append, read, follow.

    Args:
        nc: a connected NATS client.
        replicas: stream replication (1 for a single server, 3 for a cluster); default
            ``$STREAMFLOW_REPLICAS`` or 1. An existing stream is never scaled down.
        publish_timeout: seconds to wait for one publish acknowledgement.
        retry_deadline: seconds to keep retrying a publish whose outcome is unknown.
    """

    def __init__(self, nc: NATS, *, replicas: int | None = None, publish_timeout: float = 5.0,
                 retry_deadline: float = 60.0) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream(timeout=publish_timeout)
        if replicas is None:
            try:
                replicas = int(os.environ.get("STREAMFLOW_REPLICAS", "1"))
            except ValueError:
                replicas = 1
        self.replicas = max(1, replicas)
        self.publish_timeout = publish_timeout
        self.retry_deadline = retry_deadline

    async def setup(self) -> None:
        """Create (or update) the streams the log needs. Idempotent."""
        events = api.StreamConfig(
            name=EVENTS_STREAM,
            subjects=["sf.ev.>"],
            retention=api.RetentionPolicy.LIMITS,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=120.0,
            allow_direct=True,
            max_msg_size=4 * 1024 * 1024,
        )
        tasks = api.StreamConfig(
            name=TASKS_STREAM,
            subjects=["sf.task.>"],
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
            duplicate_window=120.0,
        )
        for config in (events, tasks):
            try:
                await self.js.add_stream(config)
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code != 10058:  # stream name already in use with a different config
                    raise EventLogError(f"cannot create stream {config.name}: {exc}") from exc
                # Never scale an existing stream down (a client with the default of 1 must not
                # turn a replicated R3 log into R1).
                info = await self.js.stream_info(str(config.name))
                config.num_replicas = max(info.config.num_replicas or 1, self.replicas)
                await self.js.update_stream(config)
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as exc:
                raise BusError(f"JetStream is not available on the bus: {exc}") from exc

    async def append(
        self,
        run_id: str,
        aggregate: str,
        agg_id: str | None,
        body: EventBody,
        *,
        producer: str,
        key: str = "",
        causation_id: str | None = None,
        expected_last_seq: int | None = None,
        epoch: int = 0,
        fence: Fence | None = None,
    ) -> AppendResult:
        """Append one event, exactly once.

        Args:
            run_id: the run.
            aggregate: the aggregate kind (``wf``, ``step``...).
            agg_id: the aggregate id (step id, port id, job id) or None.
            body: the event.
            producer: the writing actor.
            key: what makes this fact unique within its aggregate and type (a tag, an
                attempt...); it goes into the deterministic event id.
            causation_id: the id of the event that caused it.
            expected_last_seq: when given, the append only succeeds if the subject's last
                stream sequence is this (0: the subject must be empty).
            epoch: the writer's fencing epoch.
            fence: the writer's fence: the server stores the event only while the fence
                subject's last event is still this writer's (the check replaces
                ``expected_last_seq``, which must then be None: a fenced writer is the
                only writer of its subjects).

        Returns:
            Where it was stored, and whether it was a duplicate.

        Raises:
            FencedError: ``fence`` is no longer current (another process took the lease).
            ConcurrencyError: the expected-sequence check failed.
            BusError: the outcome is still unknown after ``retry_deadline`` seconds.
        """
        kind = event_type(body)
        eid = event_id(run_id, f"{aggregate}.{agg_id}", kind, key)
        if fence is not None:
            epoch = epoch or fence.epoch
        envelope = Envelope(
            event_id=eid,
            run_id=run_id,
            producer=producer,
            body=body,
            causation_id=causation_id,
            epoch=epoch,
            occurred_at=time.time_ns(),
        )
        headers = {"Nats-Msg-Id": eid, "Sf-Type": kind}
        if fence is not None:
            if expected_last_seq is not None:
                raise ValueError("an append is either fenced or checked against its subject, not both")
            headers["Nats-Expected-Last-Subject-Sequence"] = str(fence.seq)
            headers["Nats-Expected-Last-Subject-Sequence-Subject"] = fence.subject
        elif expected_last_seq is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expected_last_seq)
        subject = run_subject(run_id, aggregate, agg_id)
        payload = encode(envelope)
        backoff = Backoff(deadline=self.retry_deadline)
        while True:
            try:
                ack = await self.js.publish(subject, payload, stream=EVENTS_STREAM, headers=headers,
                                            timeout=self.publish_timeout)
                if _CRASH_POINTS:
                    _maybe_crash(kind)
                return AppendResult(ack.seq, eid, bool(ack.duplicate))
            except nats.js.errors.BadRequestError as exc:
                if exc.err_code == 10164 and not backoff.expired:
                    # Clustered streams check one expected-sequence subject at a time: another
                    # append checked against the same (fence) subject is still being replicated.
                    # Nothing was stored; check again in a moment.
                    await asyncio.sleep(random.uniform(0.002, 0.02))
                    continue
                if exc.err_code == 10071 and fence is not None:
                    # The fence moved on: a newer lease holder wrote its own. Whether or not an
                    # earlier try of this append landed, this writer is stale from now on.
                    raise FencedError(f"{subject}: refused, {fence.subject} has a newer lease holder "
                                      f"(this process's lease was taken over)") from exc
                if exc.err_code == 10071:
                    # The check runs before deduplication: our own earlier attempt (whose
                    # ack was lost) makes a retry fail it. That is a success, not a conflict.
                    last = await self.last(subject)
                    if last is not None and last[1].event_id == eid:
                        return AppendResult(last[0], eid, True)
                    raise ConcurrencyError(f"{subject}: {exc.description}") from exc
                raise EventLogError(f"cannot append to {subject}: {exc}") from exc
            except _UNKNOWN_OUTCOME as exc:
                # Unknown outcome: retry with the same message id (dedup makes it safe).
                if backoff.expired or self.nc.is_closed:
                    raise BusError(f"append to {subject} not acknowledged: {exc!r}") from exc
                await backoff.wait()

    async def publish_task(self, subject: str, payload: bytes, msg_id: str) -> None:
        """Queue a work item on ``SF_TASKS``, exactly once per ``msg_id``, retrying unknown outcomes.

        Raises:
            BusError: the outcome is still unknown after ``retry_deadline`` seconds.
        """
        await self._transient(
            lambda: self.js.publish(subject, payload, stream=TASKS_STREAM, headers={"Nats-Msg-Id": msg_id},
                                    timeout=self.publish_timeout),
            failure=f"task {msg_id} not acknowledged", errors=_UNKNOWN_OUTCOME)

    async def _transient(self, call: Any, *, failure: str = "JetStream did not answer",
                         errors: tuple[type[Exception], ...] = _ELECTION) -> Any:
        """Await ``call()`` retrying the errors of a leader election or of an unknown outcome
        (bounded by ``retry_deadline``; a retried publish keeps its message id, so the
        server's deduplication makes it safe).

        Raises:
            BusError: still failing at the deadline, or the connection is closed.
        """
        backoff = Backoff(deadline=self.retry_deadline)
        while True:
            try:
                return await call()
            except errors as exc:
                if backoff.expired or self.nc.is_closed:
                    raise BusError(f"{failure}: {exc!r}") from exc
                await backoff.wait()

    async def last(self, subject: str) -> tuple[int, Envelope] | None:
        """Return the last event on ``subject`` and its stream sequence, or None."""
        try:
            msg = await self._transient(lambda: self.js.get_last_msg(EVENTS_STREAM, subject))
        except nats.js.errors.NotFoundError:
            return None
        if msg.data is None or msg.seq is None:
            return None
        return msg.seq, decode(msg.data)

    async def first(self, subject: str) -> tuple[int, Envelope] | None:
        """Return the first event on ``subject`` and its stream sequence, or None."""
        try:
            msg = await self._transient(lambda: self.js.get_msg(EVENTS_STREAM, seq=1, subject=subject, next=True))
        except nats.js.errors.NotFoundError:
            return None
        if msg.data is None or msg.seq is None:
            return None
        return msg.seq, decode(msg.data)

    async def count(self, subject_filter: str) -> int:
        """How many events match ``subject_filter``."""
        info = await self._transient(lambda: self.js.stream_info(EVENTS_STREAM, subjects_filter=subject_filter))
        return sum((info.state.subjects or {}).values())

    async def runs(self) -> list[str]:
        """Ids of every run in the log, in order of submission."""
        info = await self.js.stream_info(EVENTS_STREAM, subjects_filter="sf.ev.*.wf")
        subjects = info.state.subjects or {}
        runs = [s.split(".")[2] for s in subjects]
        firsts: list[tuple[int, str]] = []
        for run in runs:
            first = await self.first(run_subject(run, "wf"))
            firsts.append((first[0] if first else 0, run))
        return [run for _, run in sorted(firsts)]

    async def read_object(self, bucket: str, name: str) -> bytes:
        """The content of an object of a JetStream object store (a snapshot, say).

        Its chunks are read with :func:`~events.replay.catch_up` and joined once: nats-py's
        ``ObjectStore.get`` appends them one by one (quadratic in the object's size, seconds
        for a snapshot of ~100 MB). The digest is checked; anything unexpected falls back on
        ``ObjectStore.get``.

        Raises:
            nats.js.errors.ObjectNotFoundError: no such object (and what ``ObjectStore.get`` raises).
        """
        store = await self.js.object_store(bucket)
        info = await store.get_info(name)
        if info.nuid and not info.is_link() and info.size and info.digest:
            digest = hashlib.sha256()
            chunks: list[bytes] = []
            async with contextlib.aclosing(catch_up(self.nc, self.js, f"OBJ_{bucket}", f"$O.{bucket}.C.{info.nuid}",
                                                    1)) as parts:
                async for _, _, data, _, _ in parts:
                    chunks.append(data)
                    digest.update(data)
            blob = b"".join(chunks)
            expected = info.digest.partition("=")[2]
            if len(blob) == info.size and base64.urlsafe_b64decode(expected + "==") == digest.digest():
                return blob
        result = await store.get(name)
        return bytes(result.data or b"")

    async def exists(self, run_id: str) -> bool:
        """Whether the run has a ``wf`` aggregate in the log."""
        return await self.first(run_subject(run_id, "wf")) is not None

    async def read(self, run_id: str, *, from_stream_seq: int = 1, subject_filter: str | None = None,
                   follow: bool = False) -> AsyncIterator[Record]:
        """Yield a run's events in log order.

        Args:
            run_id: the run.
            from_stream_seq: first stream sequence to read.
            subject_filter: a narrower filter than the whole run (``sf.ev.<run>.port.*``).
            follow: keep yielding new events once caught up (until the caller stops).

        Raises:
            RunNotFoundError: the run has no events and ``follow`` is False.
        """
        subject = subject_filter or run_subject(run_id)
        if from_stream_seq > 1 and follow and not await self.exists(run_id):
            raise RunNotFoundError(f"no run {run_id!r} in the event log")
        async with contextlib.aclosing(self._read(subject, from_stream_seq=from_stream_seq, follow=follow)) as records:
            async for record in records:
                yield record
        return

    async def read_all(self, *, follow: bool = False, from_stream_seq: int = 1,
                       subject_filter: str = "sf.ev.>") -> AsyncIterator[Record]:
        """Yield every run's events in log order (optionally only those matching a filter,
        e.g. ``sf.ev.*.wf`` for every run's lifecycle)."""
        async with contextlib.aclosing(self._read(subject_filter, from_stream_seq=from_stream_seq,
                                                  follow=follow)) as records:
            async for record in records:
                yield record

    async def _any_from(self, subject: str, from_stream_seq: int) -> bool:
        """Whether an event matching ``subject`` is stored at or after ``from_stream_seq``."""
        try:
            await self.js.get_msg(EVENTS_STREAM, seq=from_stream_seq, subject=subject, next=True)
        except nats.js.errors.NotFoundError:
            return False
        return True

    async def _read(self, subject: str, *, from_stream_seq: int, follow: bool) -> AsyncGenerator[Record, None]:
        start = max(1, from_stream_seq)
        if not await self._any_from(subject, start):
            # Nothing to replay (and, without follow, nothing would ever arrive to end a read).
            if not follow:
                if subject.endswith(".>") and subject.count(".") == 3 and (
                        start == 1 or not await self._any_from(subject, 1)):
                    raise RunNotFoundError(f"no run {subject.split('.')[2]!r} in the event log")
                return
            async with contextlib.aclosing(self._follow(subject, start, follow=True,
                                                        ordinal=0 if start == 1 else None)) as records:
                async for record in records:
                    yield record
            return
        # What is stored: a pull consumer read straight off the protocol parser (events/replay.py).
        ordinal: int | None = 0 if start == 1 else None
        caught_up = False
        async with contextlib.aclosing(catch_up(self.nc, self.js, EVENTS_STREAM, subject, start)) as stored:
            async for sseq, subj, data, stamp, pending in stored:
                if ordinal is not None:
                    ordinal += 1
                yield Record(stream_seq=sseq, subject=subj.decode(), envelope=decode(data), seq=ordinal or 0,
                             time=stamp / 1e9)
                start = sseq + 1
                caught_up = pending == 0
        if caught_up and not follow:
            return
        # What comes next (or the rest, had the catch-up stopped early): the ordered consumer.
        async with contextlib.aclosing(self._follow(subject, start, follow=follow, ordinal=ordinal)) as records:
            async for record in records:
                yield record

    async def _follow(self, subject: str, start: int, *, follow: bool,
                      ordinal: int | None) -> AsyncGenerator[Record, None]:
        """Read with an ordered push consumer from ``start``; without ``follow``, until nothing
        is pending (at least one event must then be stored at or after ``start``)."""
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10_000)

        async def _cb(msg: Any) -> None:
            await queue.put(msg)

        sub = await self.js.subscribe(
            subject,
            cb=_cb,
            ordered_consumer=True,
            idle_heartbeat=2.0,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=start),
            stream=EVENTS_STREAM,
        )
        try:
            while True:
                msg = await queue.get()
                meta = msg.metadata
                if ordinal is not None:
                    ordinal += 1
                yield Record(
                    stream_seq=meta.sequence.stream,
                    subject=msg.subject,
                    envelope=decode(msg.data),
                    seq=ordinal or 0,
                    time=server_time(msg.reply),
                )
                if meta.num_pending == 0 and not follow:
                    return
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
