"""The CheckpointManager: snapshots of a run's folded state, to bound replay time.

Every ``every`` events the host hands it the folded state of each of its actors (their
``snapshot()``, as of one stream sequence ``S``: the host folds events synchronously, so
all states stop at the same event), grouped by actor group. It encodes one snapshot per
group, stores it in the JetStream object store ``sf_snapshots`` under ``<run>.<group>``
(the latest replaces the previous one), then appends ``CheckpointTaken{last_seq: S}`` on
``sf.ev.<run>.ckpt.<group>``, fenced like the group's other appends: only the group's
current lease holder snapshots it, and a host restores a group only from that group's
own snapshot (never another host's groups). The log stays complete: snapshots only let a
host that resumes the run start folding at ``S + 1`` instead of the first event.

A snapshot is used only if it was written for the same graph (its digest) and the same
snapshot format; otherwise the host replays from the start.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
import nats.js.errors
import structlog

from events.codec import enc_hook
from events.log import EventLog, Fence
from events.schema import CheckpointTaken
from streamflow.workflow.graph import WorkflowGraph

__all__ = ["SNAPSHOT_BUCKET", "SNAPSHOT_FORMAT", "CheckpointManager", "Snapshot", "graph_digest"]

log = structlog.get_logger("streamflow.checkpoint")

SNAPSHOT_BUCKET = "sf_snapshots"
SNAPSHOT_FORMAT = 2  # 2: one snapshot per actor group


class Snapshot(msgspec.Struct, kw_only=True):
    """A stored snapshot.

    Attributes:
        format: the snapshot format version.
        run_id: the run.
        graph: digest of the run's graph.
        last_seq: the last stream sequence folded into the states.
        events: how many of the run's events that is.
        actors: actor address -> its ``snapshot()``.
        group: the actor group it covers.
    """

    format: int
    run_id: str
    graph: str
    last_seq: int
    events: int
    actors: dict[str, dict[str, Any]]
    group: str = ""


_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_decoder = msgspec.msgpack.Decoder(Snapshot)


def graph_digest(graph: WorkflowGraph) -> str:
    """A digest of the graph's shape (step ids, kinds, port wiring)."""
    parts = [f"{s.id}:{s.kind}:{sorted(s.inputs.items())}:{sorted(s.outputs.items())}" for s in graph.steps.values()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    """Tuple dict keys become strings msgpack can carry (sets and tuples it encodes as arrays).

    Only what must change is copied: the state of a 100,000-job run is mostly large dicts of
    events keyed by job name, which are encoded as they are (a copy of each doubled the
    memory a snapshot took while it was encoded).
    """
    if not _converts(value):
        return value
    if isinstance(value, Mapping):
        return {(_key(k)): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value]


def _converts(value: Any) -> bool:
    """Whether :func:`_plain` must rebuild ``value``: a mapping that is not a plain dict or has
    a tuple key, or a container holding one."""
    if isinstance(value, Mapping):
        return (type(value) is not dict or any(isinstance(k, tuple) for k in value)
                or any(_converts(v) for v in value.values()))
    if isinstance(value, set | frozenset | tuple | list):
        return any(isinstance(v, Mapping | set | frozenset | tuple | list) and _converts(v) for v in value)
    return False


def _key(key: Any) -> Any:
    return msgspec.json.encode(list(key)).decode() if isinstance(key, tuple) else key


class CheckpointManager:
    """Takes and loads snapshots of a run.

    Args:
        log_: the event log.
        run_id: the run.
        graph: the run's graph.
        every: events between two snapshots (0 disables them).
        fences: actor group -> the fence of this host's lease on it (empty: unfenced).
    """

    def __init__(self, log_: EventLog, run_id: str, graph: WorkflowGraph, every: int,
                 fences: dict[str, Fence] | None = None) -> None:
        self.log = log_
        self.run_id = run_id
        self.fences = dict(fences or {})
        self.digest = graph_digest(graph)
        self.every = every
        self._store: Any = None
        self._busy = False
        self.taken = 0

    async def _bucket(self) -> Any:
        if self._store is None:
            js = self.log.js
            try:
                self._store = await js.object_store(SNAPSHOT_BUCKET)
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
                self._store = await js.create_object_store(SNAPSHOT_BUCKET)
        return self._store

    def due(self, events_since: int, events_seen: int = 0) -> bool:
        """Whether a snapshot should be taken now: ``every`` events after the last one, or
        a quarter of the events seen so far if that is more.

        A snapshot encodes the whole folded state, which grows with the run: at a fixed
        interval their cost per event would grow with the run too (quadratic in total). The
        growing interval keeps the total linear (a geometric series), and what a restore
        still has to replay stays under a fifth of the log.
        """
        return self.every > 0 and events_since >= max(self.every, events_seen // 4) and not self._busy

    def key(self, group: str) -> str:
        """The object name of a group's snapshot."""
        return f"{self.run_id}.{group}"

    def capture(self, states: dict[str, dict[str, dict[str, Any]]], last_seq: int, events: int) -> dict[str, bytes]:
        """Encode each group's states (synchronously, so they are consistent as of ``last_seq``)."""
        return {group: _encoder.encode(Snapshot(format=SNAPSHOT_FORMAT, run_id=self.run_id, graph=self.digest,
                                                last_seq=last_seq, events=events, group=group,
                                                actors={k: _plain(v) for k, v in actors.items()}))
                for group, actors in states.items()}

    async def store(self, data: dict[str, bytes], last_seq: int, events: int) -> None:
        """Store each group's encoded snapshot and record ``CheckpointTaken`` for it."""
        self._busy = True
        try:
            store = await self._bucket()
            for group, blob in sorted(data.items()):
                fence = self.fences.get(group)
                if self.fences and fence is None:
                    continue  # not leased here: not ours to snapshot
                await store.put(self.key(group), blob)
                await self.log.append(self.run_id, "ckpt", group,
                                      CheckpointTaken(last_seq=last_seq, key=f"{SNAPSHOT_BUCKET}/{self.key(group)}",
                                                      events=events),
                                      producer="checkpoint-manager", key=str(last_seq), fence=fence)
                log.debug("checkpoint_taken", group=group, last_seq=last_seq, events=events, size=len(blob))
            self.taken += 1
        finally:
            self._busy = False

    async def load(self, groups: set[str]) -> dict[str, Snapshot]:
        """The latest usable snapshot of each of ``groups`` that has one."""
        found: dict[str, Snapshot] = {}
        if self.every <= 0:
            return found
        for group in sorted(groups):
            with contextlib.suppress(Exception):
                await self._bucket()
                # read_object: the chunks joined once (nats-py's ObjectStore.get is quadratic in the size)
                snapshot = _decoder.decode(await asyncio.wait_for(self.log.read_object(SNAPSHOT_BUCKET,
                                                                                       self.key(group)), 30))
                if (snapshot.format == SNAPSHOT_FORMAT and snapshot.graph == self.digest
                        and snapshot.run_id == self.run_id and snapshot.group == group):
                    found[group] = snapshot
                else:
                    log.warning("checkpoint_ignored", group=group, reason="different graph or format")
        return found


def restore_key(key: str) -> Any:
    """Undo :func:`_key` for tuple keys."""
    if key.startswith("["):
        return tuple(msgspec.json.decode(key))
    return key
