"""The runs list of the UI: every run's row, live, started at a cost proportional to the
number of runs rather than of events (see :class:`RunsIndex`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine
from typing import Any

import nats.errors
import structlog

from events.log import EVENTS_STREAM, EventLog, Record, run_subject
from events.projections import RunSummary
from events.schema import RunSubmitted
from streamflow.errors import BusError, RunNotFoundError
from streamflow.ui.live import RunFold, _Feed, follow
from streamflow.ui.runcache import CachedRun, RunCache

__all__ = ["RunsIndex"]

log = structlog.get_logger("streamflow.ui")


class _IndexedRun:
    """A run of the runs index: its lifecycle, and either its full fold or cached counts.

    Attributes:
        life: the run folded from its ``wf`` events only (name, status, times, error).
        order: the stream sequence of its submission (newest first in the list).
        fold: the full fold, while the run is followed event by event (live, or folded at
            start-up and not settled yet).
        cached: the counts of a run not folded here (from the cache or a settled fold).
        pending: the events that arrived while the run is being refolded (None otherwise).
        changed_at: when it last changed (monotonic seconds).
        persisted: the stream sequence of the entry last written to the cache.
    """

    __slots__ = ("cached", "changed_at", "fold", "life", "order", "pending", "persisted")

    def __init__(self, run_id: str, order: int) -> None:
        self.life = RunSummary(run_id=run_id)
        self.order = order
        self.fold: RunFold | None = None
        self.cached: CachedRun | None = None
        self.pending: list[Record] | None = None
        self.changed_at = time.monotonic()
        self.persisted = 0

    def row(self) -> dict[str, Any]:
        if self.fold is not None:
            return self.fold.run_row()
        s = self.life
        jobs = dict(self.cached.jobs) if self.cached is not None else dict.fromkeys(_COUNTS, 0)
        return {"run_id": s.run_id, "name": s.name, "status": s.status, "submitted_at": s.submitted_at,
                "ended_at": s.ended_at, "duration": s.duration, "rerun_of": s.rerun_of,
                "error": s.error or (self.cached.error if self.cached is not None else None), "jobs": jobs}


_COUNTS = ("requested", "started", "completed", "reused", "failed", "retried", "rolled_back", "abandoned",
           "running", "waiting")


class RunsIndex(_Feed):
    """Every run's row, at a start-up cost proportional to the number of runs.

    Start-up: (1) every run's lifecycle from ``sf.ev.*.wf`` (a few events a run); (2) per
    run, one request for its last stream sequence and one cache read
    (:class:`~streamflow.ui.runcache.RunCache`): an entry folded to that sequence gives the
    job counts; (3) the other runs (a cache miss, a stale entry, a run that moved on) are
    folded from their own events and written to the cache. Then one ordered consumer over
    ``sf.ev.>`` from the first sequence not read at start-up keeps every row live: runs with
    a fold apply each event; a run known by its cached counts is refolded when a job event of
    it arrives. A run quiet for ``settle`` seconds drops its fold (its counts go to the
    cache), so memory does not grow with the runs seen.

    Args:
        log_: the log.
        interval: seconds between pushes of the list.
        cache: the counts cache (None: no cache, every run is folded at start-up).
        settle: seconds after its last event when a run's fold is dropped for its counts.
        persist_after: seconds after its last event when a finished run's counts are cached.
        concurrency: runs folded at once.
        bulk_over: when more runs than this are to be folded at start-up (the first start,
            with an empty cache), they are folded in one pass over the log from the oldest.
    """

    def __init__(self, log_: EventLog, interval: float = 0.5, *, cache: RunCache | None = None,
                 settle: float = 120.0, persist_after: float = 1.0, concurrency: int = 4,
                 bulk_over: int = 64) -> None:
        super().__init__(log_, "sf.ev.>", interval, number=False)
        self.cache = cache
        self.settle = settle
        self.persist_after = persist_after
        self.bulk_over = bulk_over
        self.runs: dict[str, _IndexedRun] = {}
        self.folded = 0
        """Runs folded from their events (at start-up and since): what the cache saved is the rest."""
        self._full: set[str] = set()
        self._gate = asyncio.Semaphore(max(1, concurrency))
        self._work: set[asyncio.Task[None]] = set()
        self._dirty = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._main()), asyncio.create_task(self._flusher())]

    async def stop(self) -> None:
        work = list(self._work)
        for task in work:
            task.cancel()
        for task in work:
            with contextlib.suppress(BaseException):
                await task
        await super().stop()

    async def _main(self) -> None:
        info = await self.log.js.stream_info(EVENTS_STREAM)
        head = int(info.state.last_seq or 0)
        if self.cache is not None:
            await self.cache.open()
        stale: list[str] = []
        if head:
            async for record in self.log.read_all(subject_filter="sf.ev.*.wf"):
                if record.stream_seq <= head:  # later ones come through the live consumer below
                    self._lifecycle(record)
            gate = asyncio.Semaphore(32)

            async def check(run_id: str, run: _IndexedRun) -> None:
                async with gate:
                    entry = await self.cache.get(run_id) if self.cache is not None else None
                    last = None
                    if entry is not None:
                        try:  # the run's last event, whatever its aggregate
                            last = await self.log.last(run_subject(run_id))
                        except (nats.errors.Error, BusError) as exc:  # a server without wildcard last-by-subject
                            log.warning("ui: cannot check a cached run; folding it", run=run_id, error=str(exc))
                if entry is not None and last is not None and entry.seq == last[0]:
                    run.cached, run.persisted = entry, entry.seq
                else:
                    run.pending = []
                    stale.append(run_id)

            await asyncio.gather(*(check(run_id, run) for run_id, run in self.runs.items()))
        live = asyncio.create_task(follow(self.log, "sf.ev.>", self._live, asyncio.Event(), number=False,
                                          from_seq=head + 1))
        try:
            if len(stale) > self.bulk_over:
                await self._refold_many(stale, head)
            else:
                await asyncio.gather(*(self._refold(run_id) for run_id in stale))
            self.ready.set()
            await live
        finally:
            live.cancel()
            with contextlib.suppress(BaseException):
                await live

    def _lifecycle(self, record: Record) -> _IndexedRun | None:
        """Fold a ``wf`` event into its run's lifecycle (a submission creates the run)."""
        run_id = record.envelope.run_id
        run = self.runs.get(run_id)
        if run is None:
            if not isinstance(record.body, RunSubmitted):
                return None  # a run's events before its submission cannot be shown: none are
            run = self.runs[run_id] = _IndexedRun(run_id, record.stream_seq)
        if record.stream_seq > run.life.last_seq:
            run.life.apply(record)
        return run

    def _live(self, record: Record) -> None:
        """Fold an event that arrived after start-up."""
        run_id = record.envelope.run_id
        is_wf = record.aggregate == "wf"
        new = is_wf and run_id not in self.runs
        run = self._lifecycle(record) if is_wf else self.runs.get(run_id)
        if run is None:
            return
        if new:  # a run submitted now: followed event by event from its first one
            run.fold = RunFold(run_id)
            self._full.add(run_id)
        if run.fold is not None:
            if record.stream_seq > run.fold.summary.last_seq:
                finished = run.fold.summary.finished
                run.fold.apply(record)
                if run.fold.summary.finished and not finished:
                    run.fold.slim()
        elif run.pending is not None:
            run.pending.append(record)
        elif run.cached is not None and record.stream_seq > run.cached.seq:
            if is_wf:  # a lifecycle event changes no job count: the entry is still true
                run.cached.seq = record.stream_seq
                self._spawn(self._persist(run_id, run))
            else:  # a run known by its counts moved on: fold it from its events
                run.pending = [record]
                self._spawn(self._refold(run_id))
        run.changed_at = time.monotonic()
        self._dirty = True

    async def _refold(self, run_id: str) -> None:
        """Fold a run from its own events (then those that arrived meanwhile); cache its counts."""
        fold = RunFold(run_id)
        async with self._gate:
            try:
                async for record in self.log.read(run_id):
                    fold.apply(record)
            except RunNotFoundError:
                pass
            except (nats.errors.Error, BusError) as exc:
                if self.ready.is_set():  # a live refold: the run keeps its counts, the next event retries
                    log.warning("ui: run not refolded", run=run_id, error=str(exc))
                    self.runs[run_id].pending = None
                    return
                raise  # at start-up: the index restarts
        await self._install(run_id, fold)

    async def _refold_many(self, stale: list[str], head: int) -> None:
        """Fold many runs in one pass over the log from the oldest one's submission to ``head``
        (cheaper than one consumer a run when most runs are to be folded)."""
        folds = {run_id: RunFold(run_id) for run_id in stale}
        start = min(self.runs[run_id].order for run_id in stale)
        async for record in self.log.read_all(from_stream_seq=start):
            fold = folds.get(record.envelope.run_id)
            if fold is not None and record.stream_seq <= head:  # later ones are in ``pending``
                finished = fold.summary.finished
                fold.apply(record)
                if fold.summary.finished and not finished:
                    fold.slim()  # what a runs list never shows goes as soon as possible
        await asyncio.gather(*(self._install(run_id, fold) for run_id, fold in folds.items()))

    async def _install(self, run_id: str, fold: RunFold) -> None:
        """Make ``fold`` the run's, with the events that arrived while it was built."""
        run = self.runs[run_id]
        for record in run.pending or []:
            if record.stream_seq > fold.summary.last_seq:
                fold.apply(record)
        if fold.summary.finished:
            fold.slim()
        run.fold, run.pending, run.cached = fold, None, None
        self._full.add(run_id)
        self.folded += 1
        self._dirty = True
        if fold.summary.finished and self.cache is not None:
            await self._persist(run_id, run)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _persist(self, run_id: str, run: _IndexedRun) -> None:
        """Write the run's counts to the cache, unless it holds them already."""
        if self.cache is None:
            return
        if run.fold is not None:
            s = run.fold.summary
            entry = CachedRun(seq=s.last_seq, jobs=run.fold.job_counts(), error=s.error)
        elif run.cached is not None:
            entry = CachedRun(seq=run.cached.seq, jobs=dict(run.cached.jobs), error=run.cached.error)
        else:
            return
        if entry.seq != run.persisted:
            run.persisted = entry.seq
            await self.cache.put(run_id, entry)

    def _settle(self) -> None:
        """Cache the counts of finished quiet runs; drop the folds of runs quiet for ``settle`` s."""
        now = time.monotonic()
        for run_id in list(self._full):
            run = self.runs[run_id]
            fold = run.fold
            if fold is None:
                self._full.discard(run_id)
                continue
            quiet = now - run.changed_at
            if quiet < self.persist_after or (quiet < self.settle and not fold.summary.finished):
                continue
            if fold.summary.last_seq != run.persisted:
                self._spawn(self._persist(run_id, run))
            if quiet >= self.settle:
                run.cached = CachedRun(seq=fold.summary.last_seq, jobs=fold.job_counts(), error=fold.summary.error)
                run.fold = None
                self._full.discard(run_id)

    def rows(self, status: str | None = None, text: str | None = None) -> list[dict[str, Any]]:
        """The runs, newest first, optionally of one status and whose name or id contains
        ``text`` (case-insensitive)."""
        needle = (text or "").lower()
        rows = []
        for run_id, run in sorted(self.runs.items(), key=lambda item: item[1].order, reverse=True):
            life = run.fold.summary if run.fold is not None else run.life
            if status and life.status != status.upper():
                continue
            if needle and needle not in life.name.lower() and needle not in run_id.lower():
                continue
            rows.append(run.row())
        return rows

    def flush(self) -> None:
        self._settle()
        if self._dirty and self.subscribers:
            self._dirty = False
            self.broadcast(("runs", {"runs": self.rows()}))
