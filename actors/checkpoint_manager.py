"""The CheckpointManager: snapshots of a run's folded state, to bound replay time.

Every ``every`` events the host hands it the folded state of each of its actors (their
``snapshot()``, as of one stream sequence ``S``: the host folds events synchronously, so
all states stop at the same event). It encodes them with msgspec, stores them in the
JetStream object store ``sf_snapshots`` under the run id (the latest replaces the
previous one), then appends ``CheckpointTaken{last_seq: S}`` on ``sf.ev.<run>.ckpt``.
The log stays complete: snapshots only let a host that resumes the run start folding at
``S + 1`` instead of the first event.

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
from events.log import EventLog
from events.schema import CheckpointTaken
from streamflow.workflow.graph import WorkflowGraph

__all__ = ["SNAPSHOT_BUCKET", "SNAPSHOT_FORMAT", "CheckpointManager", "Snapshot", "graph_digest"]

log = structlog.get_logger("streamflow.checkpoint")

SNAPSHOT_BUCKET = "sf_snapshots"
SNAPSHOT_FORMAT = 1


class Snapshot(msgspec.Struct, kw_only=True):
    """A stored snapshot.

    Attributes:
        format: the snapshot format version.
        run_id: the run.
        graph: digest of the run's graph.
        last_seq: the last stream sequence folded into the states.
        events: how many of the run's events that is.
        actors: actor address -> its ``snapshot()``.
    """

    format: int
    run_id: str
    graph: str
    last_seq: int
    events: int
    actors: dict[str, dict[str, Any]]


_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_decoder = msgspec.msgpack.Decoder(Snapshot)


def graph_digest(graph: WorkflowGraph) -> str:
    """A digest of the graph's shape (step ids, kinds, port wiring)."""
    parts = [f"{s.id}:{s.kind}:{sorted(s.inputs.items())}:{sorted(s.outputs.items())}" for s in graph.steps.values()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _plain(value: Any) -> Any:
    """Sets and tuples (also as dict keys) become lists / strings msgpack can carry."""
    if isinstance(value, Mapping):
        return {(_key(k)): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset | tuple | list):
        return [_plain(v) for v in value]
    return value


def _key(key: Any) -> Any:
    return msgspec.json.encode(list(key)).decode() if isinstance(key, tuple) else key


class CheckpointManager:
    """Takes and loads snapshots of a run.

    Args:
        log_: the event log.
        run_id: the run.
        graph: the run's graph.
        every: events between two snapshots (0 disables them).
    """

    def __init__(self, log_: EventLog, run_id: str, graph: WorkflowGraph, every: int) -> None:
        self.log = log_
        self.run_id = run_id
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

    def due(self, events_since: int) -> bool:
        """Whether a snapshot should be taken now."""
        return self.every > 0 and events_since >= self.every and not self._busy

    def capture(self, states: dict[str, dict[str, Any]], last_seq: int, events: int) -> bytes:
        """Encode the states (synchronously, so they are consistent as of ``last_seq``)."""
        snapshot = Snapshot(format=SNAPSHOT_FORMAT, run_id=self.run_id, graph=self.digest, last_seq=last_seq,
                            events=events, actors={k: _plain(v) for k, v in states.items()})
        return _encoder.encode(snapshot)

    async def store(self, data: bytes, last_seq: int, events: int) -> None:
        """Store an encoded snapshot and record ``CheckpointTaken``."""
        self._busy = True
        try:
            store = await self._bucket()
            await store.put(self.run_id, data)
            await self.log.append(self.run_id, "ckpt", None,
                                  CheckpointTaken(last_seq=last_seq, key=f"{SNAPSHOT_BUCKET}/{self.run_id}",
                                                  events=events),
                                  producer="checkpoint-manager", key=str(last_seq))
            self.taken += 1
            log.debug("checkpoint_taken", last_seq=last_seq, events=events, size=len(data))
        finally:
            self._busy = False

    async def load(self) -> Snapshot | None:
        """The latest usable snapshot of the run, or None."""
        if self.every <= 0:
            return None
        with contextlib.suppress(Exception):
            store = await self._bucket()
            result = await asyncio.wait_for(store.get(self.run_id), 30)
            snapshot = _decoder.decode(result.data)
            if snapshot.format == SNAPSHOT_FORMAT and snapshot.graph == self.digest and snapshot.run_id == self.run_id:
                return snapshot
            log.warning("checkpoint_ignored", reason="different graph or format")
        return None


def restore_key(key: str) -> Any:
    """Undo :func:`_key` for tuple keys."""
    if key.startswith("["):
        return tuple(msgspec.json.decode(key))
    return key
