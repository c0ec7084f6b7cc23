"""Live views of the log: one feed per open run (the runs list is :mod:`streamflow.ui.index`).

Both fold the log with the run read model (:class:`events.projections.RunSummary`, the
one fold of job state) wrapped in :class:`RunFold`, which keeps the counts that
``RunSummary.to_dict`` recomputes over every job up to date event by event, and notes what
changed. A feed's update therefore costs O(changes), not O(jobs).

:class:`RunFeed`: one ordered consumer per open run, shared by every browser tab watching
it; a tab gets a snapshot, then coalesced updates, then ``end``. A feed with no subscriber
stops (its consumer is deleted) ``idle`` seconds after its last use.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import structlog
from nats.js import api

from events.codec import decode
from events.log import EVENTS_STREAM, EventLog, Record, run_subject
from events.projections import JOB_STATES, RunSummary
from events.replay import server_time
from events.schema import JobCompleted, JobFailed, JobStarted, RunSubmitted, StepFailed, StepTerminated
from streamflow.runs.events import record_to_json

__all__ = ["RunFeed", "RunFold", "follow"]

log = structlog.get_logger("streamflow.ui")

_JobKey = tuple[str, bool, int, int, bool, int]


async def follow(log_: EventLog, subject: str, on_record: Callable[[Record], None], ready: asyncio.Event,
                 *, number: bool = True, from_seq: int = 1) -> None:
    """Fold every event matching ``subject`` with ``on_record``, then keep following.

    One ordered consumer (the server re-creates it on a gap). ``ready`` is set once the
    events stored when it started were all folded. ``number``: give records their run
    sequence (1-based position in the subject), as ``streamflow events`` numbers them.
    ``from_seq``: the first stream sequence to deliver (then ``ready`` is set at once and
    ``number`` must be False).
    """
    if from_seq > 1 or await log_.count(subject) == 0:
        ready.set()
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=10_000)

    async def _cb(msg: Any) -> None:
        await queue.put(msg)

    sub = await log_.js.subscribe(
        subject, cb=_cb, ordered_consumer=True, idle_heartbeat=5.0,
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, config=api.ConsumerConfig(opt_start_seq=max(1, from_seq)),
        stream=EVENTS_STREAM)
    ordinal = 0
    try:
        while True:
            msg = await queue.get()
            meta = msg.metadata
            ordinal += 1
            try:
                record = Record(stream_seq=meta.sequence.stream, subject=msg.subject, envelope=decode(msg.data),
                                seq=ordinal if number else 0,
                                time=server_time(msg.reply))
                on_record(record)
            except Exception as exc:  # an event this version cannot read: skip it, say so
                log.warning("ui: event not folded", subject=msg.subject, error=str(exc))
            if meta.num_pending == 0:
                ready.set()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()


class RunFold:
    """A run's :class:`RunSummary` with incremental counts and change tracking.

    Args:
        run_id: the run.
        track: remember what changed (steps, jobs) for :meth:`take_changes`, and the
            working directory of each attempt.
    """

    def __init__(self, run_id: str, *, track: bool = False) -> None:
        self.summary = RunSummary(run_id=run_id)
        self.track = track
        self.submitted: RunSubmitted | None = None
        self.states = dict.fromkeys(JOB_STATES, 0)
        self.reused = self.retried = self.rolled_back = self.abandoned = 0
        self.step_jobs: dict[str, dict[str, int]] = {}
        self.step_status: dict[str, str] = {}
        self.workdirs: dict[tuple[str, int, int], str] = {}
        self.commands: dict[tuple[str, int, int], list[str]] = {}
        self.changed_steps: set[str] = set()
        self.changed_jobs: set[str] = set()
        self.changed = False
        self.attempt_version = 0

    def _key(self, job: str) -> _JobKey | None:
        info = self.summary.jobs.get(job)
        if info is None:
            return None
        return (info.state, info.reused_from is not None, info.retries, info.rollbacks, info.abandoned,
                len(info.attempts))

    def apply(self, record: Record) -> None:
        """Fold one event."""
        body = record.body
        job = getattr(body, "job", None) if record.aggregate != "wf" else None
        before = self._key(job) if isinstance(job, str) else None
        self.summary.apply(record)
        self.changed = True
        if isinstance(body, RunSubmitted):
            self.submitted = body
            self.changed_steps.update(body.steps)
        elif isinstance(body, StepTerminated) and record.agg_id:
            self.step_status[record.agg_id] = body.status
            self.changed_steps.add(record.agg_id)
        elif isinstance(body, StepFailed) and record.agg_id:
            self.step_status[record.agg_id] = "FAILED"
            self.changed_steps.add(record.agg_id)
        if self.track and isinstance(body, JobStarted) and body.workdir:
            self.workdirs[(body.job, body.attempt, body.delivery)] = body.workdir
        elif self.track and isinstance(body, JobCompleted | JobFailed) and body.command:
            self.commands[(body.job, body.attempt, body.delivery)] = body.command
        if isinstance(job, str):
            after = self._key(job)
            if after != before and after is not None:
                self._count(job, before, after)

    def _count(self, job: str, before: _JobKey | None, after: _JobKey) -> None:
        step = self.summary.jobs[job].step
        per_step = self.step_jobs.setdefault(step, dict.fromkeys(JOB_STATES, 0))
        if before is not None:
            self.states[before[0]] -= 1
            per_step[before[0]] -= 1
        self.states[after[0]] += 1
        per_step[after[0]] += 1
        old = before or ("", False, 0, 0, False, 0)
        self.reused += int(after[1]) - int(old[1])
        self.retried += after[2] - old[2]
        self.rolled_back += after[3] - old[3]
        self.abandoned += int(after[4]) - int(old[4])
        self.changed_steps.add(step)
        if self.track:
            self.changed_jobs.add(job)
            self.attempt_version += 1

    # --- views ---------------------------------------------------------------------------

    def job_counts(self) -> dict[str, int]:
        """``RunSummary.to_dict()["jobs"]`` plus ``running`` and ``waiting``, in O(1)."""
        s = self.summary
        return {
            "requested": len(s.jobs), "started": s.attempts_started, "completed": self.states["completed"],
            "reused": self.reused, "failed": s.attempts_failed, "retried": self.retried,
            "rolled_back": self.rolled_back, "abandoned": self.abandoned,
            "running": self.states["running"], "waiting": self.states["waiting"],
        }

    def summary_dict(self) -> dict[str, Any]:
        """``RunSummary.to_dict()`` with the counts of :meth:`job_counts`, in O(1)."""
        s = self.summary
        return {
            "run_id": s.run_id, "name": s.name, "workflow": s.workflow, "status": s.status,
            "submitted_at": s.submitted_at, "started_at": s.started_at, "ended_at": s.ended_at,
            "duration": s.duration, "steps": len(s.steps), "steps_terminated": len(s.steps_terminated),
            "jobs": self.job_counts(), "tokens": s.tokens, "events": s.events, "error": s.error,
            "failed_step": s.failed_step, "resumed": s.resumed, "rerun_of": s.rerun_of,
        }

    def run_row(self) -> dict[str, Any]:
        """The runs list's row of this run."""
        s = self.summary
        return {"run_id": s.run_id, "name": s.name, "status": s.status, "submitted_at": s.submitted_at,
                "ended_at": s.ended_at, "duration": s.duration, "rerun_of": s.rerun_of, "error": s.error,
                "jobs": self.job_counts()}

    def step_row(self, step: str) -> dict[str, Any]:
        """A step's state and job counts."""
        counts = self.step_jobs.get(step, dict.fromkeys(JOB_STATES, 0))
        status = self.step_status.get(step)
        if status == "FAILED" or (status is None and counts["failed"] and self.summary.finished):
            state = "failed"
        elif status == "SKIPPED":
            state = "skipped"
        elif status is not None:
            state = "completed"
        elif counts["running"] or counts["completed"] or counts["failed"] or counts["waiting"]:
            state = "running"
        else:
            state = "waiting"
        return {"id": step, "name": self.summary.step_label(step), "state": state, "jobs": dict(counts)}

    def step_rows(self) -> list[dict[str, Any]]:
        """Every step's row, in declaration order."""
        return [self.step_row(step) for step in self.summary.steps]

    def take_changes(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The rows of the steps changed and of the attempts of the jobs changed since the
        last call (and forget them)."""
        steps = [self.step_row(s) for s in sorted(self.changed_steps) if s in self.summary.steps]
        attempts = [asdict(a) for job in sorted(self.changed_jobs)
                    for a in self.summary.jobs[job].attempts]
        self.changed_steps.clear()
        self.changed_jobs.clear()
        self.changed = False
        return steps, attempts

    def slim(self) -> None:
        """Drop what a runs list never shows (job inputs and outputs) from a finished run."""
        for info in self.summary.jobs.values():
            info.inputs, info.outputs = {}, None


class _Subscriber:
    """One SSE client: a bounded queue of ``(event, data)``; ``None`` ends it."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue(maxsize=64)

    def push(self, item: tuple[str, Any] | None) -> bool:
        try:
            self.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:  # too slow a client: it reconnects and gets a snapshot
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    self.queue.get_nowait()
            self.queue.put_nowait(None)
            return False


class _Feed:
    """What the runs index and the run feeds share: a follow task, subscribers, a flusher."""

    def __init__(self, log_: EventLog, subject: str, interval: float, *, number: bool) -> None:
        self.log = log_
        self.subject = subject
        self.interval = interval
        self.number = number
        self.ready = asyncio.Event()
        self.subscribers: set[_Subscriber] = set()
        self.last_used = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(follow(self.log, self.subject, self.apply, self.ready,
                                                  number=self.number)),
                       asyncio.create_task(self._flusher())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        for sub in list(self.subscribers):
            sub.push(None)

    @property
    def failed(self) -> bool:
        """Whether the follow task died (the feed must be re-created)."""
        return bool(self._tasks) and self._tasks[0].done()

    async def wait_ready(self, timeout: float = 30.0) -> None:
        self.last_used = time.monotonic()
        await asyncio.wait_for(self.ready.wait(), timeout)

    def subscribe(self) -> _Subscriber:
        sub = _Subscriber()
        self.subscribers.add(sub)
        self.last_used = time.monotonic()
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        self.subscribers.discard(sub)
        self.last_used = time.monotonic()

    def broadcast(self, item: tuple[str, Any] | None) -> None:
        for sub in list(self.subscribers):
            if not sub.push(item):
                self.subscribers.discard(sub)

    def apply(self, record: Record) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def flush(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def on_ready(self) -> None:
        """Called once caught up: what was folded so far is in every snapshot."""

    async def _flusher(self) -> None:
        await self.ready.wait()
        self.on_ready()
        while True:
            await asyncio.sleep(self.interval)
            self.flush()


class RunFeed(_Feed):
    """One open run: its fold, the newest events and the tabs watching it."""

    MAX_EVENTS = 200

    def __init__(self, log_: EventLog, run_id: str, interval: float = 0.5) -> None:
        super().__init__(log_, run_subject(run_id), interval, number=True)
        self.run_id = run_id
        self.fold = RunFold(run_id, track=True)
        self.events: deque[dict[str, Any]] = deque(maxlen=self.MAX_EVENTS)
        self.dropped = 0
        self.ended = False
        self.graph: dict[str, Any] | None = None
        self.positions = array("q")
        """The stream sequence of each event of the run, by run sequence - 1 (8 bytes an event)."""

    def position(self, since: int) -> tuple[int, int]:
        """``(n, stream_seq)`` of the run's latest event known here at or before run sequence
        ``since`` (``(0, 0)``: none): where a page of events after ``since`` starts reading."""
        n = min(max(0, since), len(self.positions))
        while n and not self.positions[n - 1]:
            n -= 1
        return (n, self.positions[n - 1]) if n else (0, 0)

    def apply(self, record: Record) -> None:
        self.fold.apply(record)
        if record.seq > len(self.positions):  # an unreadable event before it stays 0 (unknown)
            self.positions.extend([0] * (record.seq - 1 - len(self.positions)))
            self.positions.append(record.stream_seq)
        if len(self.events) == self.MAX_EVENTS:
            self.dropped += 1
        self.events.append(record_to_json(record))

    def on_ready(self) -> None:
        self.fold.take_changes()  # the catch-up is in the snapshots, not in an update

    def snapshot(self) -> dict[str, Any]:
        """What a tab gets on connect: everything so far (events excepted: see ``/events``)."""
        return {"summary": self.fold.summary_dict(), "steps": self.fold.step_rows(),
                "timeline_version": self.fold.attempt_version}

    def flush(self) -> None:
        if not self.fold.changed and not self.events:
            return
        steps, attempts = self.fold.take_changes()
        update = {"summary": self.fold.summary_dict(), "steps": steps, "attempts": attempts,
                  "events": list(self.events), "dropped_events": self.dropped,
                  "timeline_version": self.fold.attempt_version}
        self.events.clear()
        self.dropped = 0
        self.broadcast(("update", update))
        if self.fold.summary.finished:
            self.broadcast(("end", {"status": self.fold.summary.status}))
