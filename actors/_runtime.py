"""The actor runtime: actors, the per-run context, and the host that runs them.

An actor owns some subjects of a run (it is their only writer) and follows others. Its
state is a *pure fold* of the events it sees (:meth:`Actor.apply`, no I/O); its decisions
are taken in :meth:`Actor.react`, which may append events and must be idempotent: it is
called after every batch of new events and once after replay, and it decides only from
state. Decisions it has appended but not yet seen come back are remembered locally so that
they are not repeated while in flight; every append has a deterministic id anyway, so a
repeat is deduplicated by the server.

The :class:`ActorHost` runs a set of actors for one run in one process. It reads the run's
events through one ordered consumer and routes each record to the actors interested in it:

1. ``start()`` every actor (ports open their request subscriptions, handshake);
2. *replay*: fold every event already in the log, with no side effects;
3. ``react()`` every actor once (reconcile: carry on where the log stops);
4. *live*: fold each new event, then wake the actors that saw it.

Replay and live use the same consumer, so nothing is missed in between.

Fencing: a host takes the lease of every actor group it hosts and writes the group's
fence (:func:`events.lease.write_fence`) before starting; :meth:`Actor.append` then sends
every append of an actor with its group's fence, which the server checks, and an actor
without a fence in a fenced host cannot append at all. A host whose lease was taken over
while it was paused therefore writes nothing once it resumes: its first append fails with
:class:`~streamflow.errors.FencedError` and the host stops.

Snapshots are taken per actor group (one object per group); on start each group's actors
are restored from their group's snapshot only, and every event after the oldest restored
point is read again, each actor skipping what its own snapshot already folded.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
import structlog
from nats.aio.client import Client as NATS

from events.log import EventLog, Fence, Record
from events.schema import EventBody
from streamflow.errors import FencedError
from streamflow.workflow.graph import WorkflowGraph

__all__ = ["Actor", "ActorHost", "Interest", "RunContext"]

log = structlog.get_logger("streamflow.actors")


@dataclass
class RunContext:
    """What every actor of a run shares in one process.

    Attributes:
        run_id: the run.
        nc: the NATS connection.
        log: the event log.
        graph: the run's dataflow graph.
        workdir: base directory of job working directories.
        outdir: where outputs are delivered.
        settings: run settings (failure policy, deployments, ...).
        epoch: this host's fencing epoch for the run.
        fences: actor group -> the fence its appends carry (empty: an unfenced host, as in
            tests that drive actors directly).
        local_ports: port id -> the put entry point of that port's actor when this process
            hosts it (:func:`actors.port.put_token` then calls it directly instead of going
            through a request/reply on the bus; the port actor stays the only writer).
    """

    run_id: str
    nc: NATS
    log: EventLog
    graph: WorkflowGraph
    workdir: str
    outdir: str
    settings: dict[str, Any] = field(default_factory=dict)
    epoch: int = 0
    fences: dict[str, Fence] = field(default_factory=dict)
    local_ports: dict[str, Callable[[Any], Awaitable[int]]] = field(default_factory=dict)
    host: str = field(default_factory=lambda: f"{socket.gethostname()}/{os.getpid()}")


@dataclass(frozen=True)
class Interest:
    """Which subjects an actor may fold: a hint that lets the host find the interested actors
    of a new subject without asking every actor (a 1,000-step chain hosts 2,000 actors, and
    every job adds subjects). It must cover at least every subject :meth:`Actor.interested`
    accepts; the host still asks ``interested`` of each actor the hint names.

    Attributes:
        subjects: exact subjects.
        aggregates: aggregate kinds of which every subject may be of interest.
        prefixes: (aggregate kinds, id prefix): subjects of those kinds whose id starts with
            the prefix, which ends with ``-`` (a step's jobs: ``<step>-<tag>``).
    """

    subjects: frozenset[str] = frozenset()
    aggregates: frozenset[str] = frozenset()
    prefixes: tuple[tuple[frozenset[str], str], ...] = ()


class Actor(ABC):
    """Base of every actor.

    ``SNAPSHOT`` names the attributes that make up the actor's folded state, with their
    types: :meth:`snapshot` encodes them and :meth:`restore` decodes them (msgspec, typed:
    no code is ever loaded from a snapshot). Subclasses extend it.

    Args:
        ctx: the run context.
        address: the actor's address, also its ``producer`` name in events.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {}
    #: True for actors that read what they need themselves in :meth:`start` and fold the
    #: rest idempotently (the run watcher): they do not hold back the start of a restore.
    SELF_INITIALISING: ClassVar[bool] = False

    def __init__(self, ctx: RunContext, address: str) -> None:
        self.ctx = ctx
        self.address = address
        self.replaying = True
        self._wake = asyncio.Event()
        #: the actor group it belongs to (set by whoever builds the host; its fence guards
        #: every append of the actor).
        self.group: str | None = None
        #: the last stream sequence its restored snapshot folded (0: none).
        self.restored_seq = 0

    @abstractmethod
    def interested(self, record: Record) -> bool:
        """Whether this actor folds the events of ``record``'s subject.

        The answer must depend on the subject alone: the host caches it per subject.
        """

    @abstractmethod
    def apply(self, record: Record) -> None:
        """Fold one event into the state. Pure: no I/O, no logging."""

    @abstractmethod
    async def react(self) -> None:
        """Take every decision the state calls for (idempotent)."""

    def interest(self) -> Interest | None:
        """A hint of the subjects :meth:`interested` may accept (None: any; it is then
        asked about every new subject)."""
        return None

    async def start(self) -> None:
        """Open subscriptions before the host starts routing (default: nothing)."""
        return None

    async def stop(self) -> None:
        """Close what :meth:`start` opened (default: nothing)."""
        return None

    @property
    def done(self) -> bool:
        """Whether the actor has nothing left to do in this run."""
        return False

    async def append(self, aggregate: str, agg_id: str | None, body: EventBody, *, key: str = "",
                     causation_id: str | None = None, expected_last_seq: int | None = None) -> int:
        """Append an event written by this actor; returns its stream sequence.

        In a fenced host the append carries the fence of the actor's group instead of
        ``expected_last_seq`` (the group's lease makes the actor the only writer of its
        subjects; the fence also refuses it once another process took the lease).

        Raises:
            FencedError: the group's lease was taken over, or the actor has no fence here.
        """
        fence: Fence | None = None
        if self.ctx.fences:
            fence = self.ctx.fences.get(self.group or "")
            if fence is None:
                raise FencedError(f"{self.address}: actor group {self.group!r} is not leased by this host")
            expected_last_seq = None
        result = await self.ctx.log.append(
            self.ctx.run_id, aggregate, agg_id, body,
            producer=self.address, key=key, causation_id=causation_id,
            expected_last_seq=expected_last_seq, epoch=fence.epoch if fence is not None else self.ctx.epoch,
            fence=fence,
        )
        return result.stream_seq

    @classmethod
    def snapshot_fields(cls) -> dict[str, Any]:
        """``SNAPSHOT`` merged along the class hierarchy."""
        fields: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            fields.update(getattr(klass, "SNAPSHOT", {}))
        return fields

    def snapshot(self) -> dict[str, Any]:
        """The folded state, as plain data."""
        return {name: getattr(self, name) for name in self.snapshot_fields()}

    def restore(self, state: dict[str, Any]) -> None:
        """Load a state produced by :meth:`snapshot` (of the same class and schema)."""
        for name, kind in self.snapshot_fields().items():
            if name in state:
                setattr(self, name, msgspec.convert(state[name], kind, strict=False))

    def wake(self) -> None:
        """Ask for :meth:`react` to run soon."""
        self._wake.set()

    async def _loop(self) -> None:
        task = asyncio.current_task()
        with structlog.contextvars.bound_contextvars(run_id=self.ctx.run_id, actor=self.address):
            while True:
                await self._wake.wait()
                self._wake.clear()
                await self.react()
                # On Python 3.11 asyncio.wait_for (inside nats-py) can swallow a cancellation
                # that arrives together with its result (CPython gh-86296): honour it here.
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError


class ActorHost:
    """Runs actors of one run in this process, fed by one ordered consumer.

    Args:
        ctx: the run context.
        actors: the actors to host.
        background: extra coroutines to run in the host's task group (e.g. workers).
        checkpoints: takes and loads the snapshots of the hosted groups (a
            :class:`~actors.checkpoint_manager.CheckpointManager`), or None.
        drain: coroutines that are given ``stop`` and left to finish on their own once it
            is set (executor workers finishing the jobs they hold), unless ``force`` is set.
        force: when set, ``drain`` coroutines are cancelled too.
    """

    def __init__(self, ctx: RunContext, actors: Iterable[Actor],
                 background: Iterable[Callable[[], Coroutine[Any, Any, None]]] = (),
                 checkpoints: Any = None,
                 drain: Iterable[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = (),
                 force: asyncio.Event | None = None) -> None:
        self.ctx = ctx
        self.actors = list(actors)
        self.background = list(background)
        self.checkpoints = checkpoints
        self.drain = list(drain)
        self.force = force or asyncio.Event()
        self._routes: dict[str, list[Actor]] = {}
        self._anywhere: list[int] = []
        self._by_subject: dict[str, list[int]] = {}
        self._indexed = False  # the index is built on the first route (when the actors are final)
        self._by_aggregate: dict[str, list[int]] = {}
        self._by_prefix: dict[tuple[str, str], list[int]] = {}
        self.last_stream_seq = 0
        self.events_seen = 0
        self.replayed_events = 0
        self.restored_from: int | None = None
        self._snapshot_at = 0

    def _index(self) -> None:
        """Index the actors by the subjects their :meth:`Actor.interest` names."""
        self._indexed = True
        self._anywhere = []
        self._by_subject = {}
        self._by_aggregate = {}
        self._by_prefix = {}
        for position, actor in enumerate(self.actors):
            hint = actor.interest()
            if hint is None:
                self._anywhere.append(position)
                continue
            for subject in hint.subjects:
                self._by_subject.setdefault(subject, []).append(position)
            for aggregate in hint.aggregates:
                self._by_aggregate.setdefault(aggregate, []).append(position)
            for aggregates, prefix in hint.prefixes:
                for aggregate in aggregates:
                    self._by_prefix.setdefault((aggregate, prefix), []).append(position)

    def _route(self, record: Record) -> list[Actor]:
        routed = self._routes.get(record.subject)
        if routed is None:
            if not self._indexed:
                self._index()
            candidates = {*self._anywhere, *self._by_subject.get(record.subject, ()),
                          *self._by_aggregate.get(record.aggregate, ())}
            agg_id = record.agg_id
            if agg_id is not None and self._by_prefix:
                end = agg_id.find("-")
                while end >= 0:
                    candidates.update(self._by_prefix.get((record.aggregate, agg_id[:end + 1]), ()))
                    end = agg_id.find("-", end + 1)
            routed = [self.actors[i] for i in sorted(candidates) if self.actors[i].interested(record)]
            self._routes[record.subject] = routed
        return routed

    async def run(self, stop: asyncio.Event) -> None:
        """Host the actors until ``stop`` is set; then stop them in stages.

        Raises:
            Exception: whatever an actor raised (the others are cancelled).
        """
        for actor in self.actors:
            await actor.start()
        try:
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._pump(tg))
                for job in self.background:
                    tg.create_task(job())
                draining = [tg.create_task(job(stop)) for job in self.drain]
                stopper = tg.create_task(stop.wait())
                await stopper
                reader.cancel()
                if draining:
                    # Workers stop pulling and finish what they hold (jobs of other runs, which
                    # their own processes wait for); Ctrl-C twice (``force``) stops them too.
                    forced = asyncio.ensure_future(self.force.wait())
                    await asyncio.wait([*draining, forced], return_when=asyncio.FIRST_COMPLETED)
                    while not forced.done() and not all(d.done() for d in draining):
                        await asyncio.wait([*draining, forced], return_when=asyncio.FIRST_COMPLETED)
                    forced.cancel()
                raise _Stop
        except* _Stop:
            pass
        finally:
            for actor in self.actors:
                with contextlib.suppress(Exception):
                    await asyncio.shield(actor.stop())

    def _groups(self) -> dict[str, list[Actor]]:
        groups: dict[str, list[Actor]] = {}
        for actor in self.actors:
            if actor.group is not None and not actor.SELF_INITIALISING:
                groups.setdefault(actor.group, []).append(actor)
        return groups

    async def _restore(self) -> int:
        """Load each hosted group's snapshot into that group's actors (and only those);
        return the first sequence to read: right after the oldest restored point, or 1
        when an actor has no usable snapshot."""
        if self.checkpoints is None:
            return 1
        groups = self._groups()
        snapshots = await self.checkpoints.load(set(groups))
        points: list[tuple[int, int]] = []
        for group, members in groups.items():
            snapshot = snapshots.get(group)
            by_address = {a.address: a for a in members}
            if snapshot is None or set(snapshot.actors) != set(by_address):
                return 1  # this group has no usable snapshot: everyone reads from the start
            points.append((snapshot.last_seq, snapshot.events))
        if not points or any(a.group is None and not a.SELF_INITIALISING for a in self.actors):
            return 1
        for group, members in groups.items():
            snapshot = snapshots[group]
            for actor in members:
                state = snapshot.actors[actor.address]
                kinds = actor.snapshot_fields()
                actor.restore({name: _restore_keys(value) if _tuple_keys_possible(kinds.get(name, Any)) else value
                               for name, value in state.items()})
                actor.restored_seq = snapshot.last_seq
        last_seq, events = min(points)
        self.events_seen = self._snapshot_at = events
        self.restored_from = last_seq
        log.info("snapshot_restored", run_id=self.ctx.run_id, last_seq=last_seq, events=events,
                 groups=sorted(groups))
        return int(last_seq) + 1

    async def _pump(self, tg: asyncio.TaskGroup) -> None:
        log_ = self.ctx.log
        start = await self._restore()
        total = await log_.count(f"sf.ev.{self.ctx.run_id}.>") - self.events_seen
        seen = 0
        replayed = total <= 0
        if replayed:
            self._go_live(tg)
        async for record in log_.read(self.ctx.run_id, follow=True, from_stream_seq=start):
            self.last_stream_seq = record.stream_seq
            self.events_seen += 1
            seen += 1
            for actor in self._route(record):
                if record.stream_seq <= actor.restored_seq:
                    continue  # already in the state its group's snapshot restored
                actor.apply(record)
                if not actor.replaying:
                    actor.wake()
            if not replayed and seen >= total:
                replayed = True
                self.replayed_events = seen
                self._go_live(tg)
            since = self.events_seen - self._snapshot_at
            if replayed and self.checkpoints is not None and self.checkpoints.due(since, self.events_seen):
                self._snapshot_at = self.events_seen
                states = {group: {a.address: a.snapshot() for a in members}
                          for group, members in self._groups().items()}
                data = self.checkpoints.capture(states, record.stream_seq, self.events_seen)
                tg.create_task(self.checkpoints.store(data, record.stream_seq, self.events_seen))

    def _go_live(self, tg: asyncio.TaskGroup) -> None:
        for actor in self.actors:
            actor.replaying = False
            tg.create_task(actor._loop())
            actor.wake()


class _Stop(Exception):
    """Internal: ends the host's task group."""


def _restore_keys(value: Any, depth: int = 2) -> Any:
    """Undo the snapshot's tuple-key encoding in a field and in the mappings it holds (two levels:
    e.g. ``dict[str, dict[tuple[str, str], ...]]``); values below are left alone."""
    from actors.checkpoint_manager import restore_key

    if not isinstance(value, dict) or depth == 0:
        return value
    if depth == 1:  # the innermost mappings (~10^5 of them in a large run's snapshot): kept when no key is a tuple
        for k in value:
            if isinstance(k, str) and k[:1] == "[":
                return {restore_key(k) if isinstance(k, str) else k: v for k, v in value.items()}
        return value
    return {restore_key(k) if isinstance(k, str) else k: _restore_keys(v, depth - 1) for k, v in value.items()}


@functools.cache
def _tuple_keys_possible(kind: Any, depth: int = 2) -> bool:
    """Whether a snapshot field declared as ``kind`` may hold tuple keys where :func:`_restore_keys`
    looks (mappings, two levels deep); False only when its type rules them out (a large step's
    ``tokens`` alone has ~10^5 inner mappings to walk otherwise)."""
    if depth == 0 or kind in (str, int, float, bool, bytes, type(None)):
        return False
    origin = typing.get_origin(kind)
    if origin in (list, set, frozenset, tuple):
        return False  # not a mapping: _restore_keys leaves it alone
    if origin is dict:
        key, value = typing.get_args(kind)
        return typing.get_origin(key) is tuple or key is tuple or _tuple_keys_possible(value, depth - 1)
    if origin in (typing.Union, types.UnionType):
        return any(_tuple_keys_possible(arg, depth) for arg in typing.get_args(kind))
    # Any, or anything not recognised: look; but a struct one level down has its field names as keys.
    return not (depth == 1 and isinstance(kind, type) and issubclass(kind, msgspec.Struct))
