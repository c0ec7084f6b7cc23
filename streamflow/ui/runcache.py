"""A cache of the runs list's job counts in a JetStream KV bucket.

The runs index (:class:`streamflow.ui.live.RunsIndex`) folds every run's lifecycle from the
``sf.ev.<run>.wf`` subjects (a handful of events a run) but job counts need a run's whole
log. So that a restart does not refold months of runs, the index keeps, per run, the counts
of its fold and the stream sequence of the last event folded (the run's last event when it
was written) in the bucket :data:`CACHE_BUCKET`.

It is a read model, never a source of truth: an entry is used only while the run's last
event in the log is still the one it was folded to (checked at start-up with one request a
run); a missing, unreadable, stale or older-format entry is refolded from the log and
rewritten. Deleting the bucket is always safe (the next start refolds everything once).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

__all__ = ["CACHE_BUCKET", "CACHE_VERSION", "CachedRun", "RunCache"]

log = structlog.get_logger("streamflow.ui")

CACHE_BUCKET = "sf_ui_runs"
CACHE_VERSION = 1
"""Bumped whenever the fold or the entry's form changes: entries of another version are refolded."""


@dataclass
class CachedRun:
    """What the runs list keeps of a run it does not fold.

    Attributes:
        seq: the stream sequence of the last event of the run folded into ``jobs``.
        jobs: the run row's job counts (:meth:`streamflow.ui.live.RunFold.job_counts`).
        error: the run's error as the full fold saw it (a ``StepFailed`` is not on ``wf``).
    """

    seq: int
    jobs: dict[str, int] = field(default_factory=dict)
    error: str | None = None

    def encode(self) -> bytes:
        return json.dumps({"v": CACHE_VERSION, "seq": self.seq, "jobs": self.jobs, "error": self.error}).encode()

    @classmethod
    def decode(cls, data: bytes) -> CachedRun | None:
        """The entry, or None when it is not one of this version."""
        try:
            raw: Any = json.loads(data)
            if not isinstance(raw, dict) or raw.get("v") != CACHE_VERSION:
                return None
            seq, jobs, error = raw["seq"], raw["jobs"], raw.get("error")
            if not isinstance(seq, int) or not isinstance(jobs, dict) \
                    or not all(isinstance(k, str) and isinstance(v, int) for k, v in jobs.items()):
                return None
            return cls(seq=seq, jobs=jobs, error=error if isinstance(error, str) else None)
        except (ValueError, KeyError, TypeError):
            return None


class RunCache:
    """The bucket of :class:`CachedRun` entries, keyed by run id.

    Every failure to use it is logged and answered as a miss: the index then folds from the
    log, which it can always do.

    Args:
        js: the JetStream context of the log.
        bucket: the bucket's name.
        replicas: its replication (that of the log).
    """

    def __init__(self, js: JetStreamContext, bucket: str = CACHE_BUCKET, replicas: int = 1) -> None:
        self.js = js
        self.bucket = bucket
        self.replicas = replicas
        self._kv: KeyValue | None = None

    async def open(self) -> bool:
        """Bind to the bucket, creating it if needed; False (logged) when it cannot be used."""
        try:
            try:
                self._kv = await self.js.key_value(self.bucket)
            except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
                config = api.KeyValueConfig(bucket=self.bucket, history=1, storage=api.StorageType.FILE,
                                            replicas=self.replicas,
                                            description="StreamFlow UI: per-run job counts (a cache of the "
                                                        "event log, safe to delete)")
                try:
                    self._kv = await self.js.create_key_value(config)
                except nats.js.errors.BadRequestError:  # created concurrently by another UI
                    self._kv = await self.js.key_value(self.bucket)
        except (nats.errors.Error, OSError) as exc:
            log.warning("ui: runs cache not available; folding every run from the log", error=str(exc))
            self._kv = None
        return self._kv is not None

    async def get(self, run_id: str) -> CachedRun | None:
        """The run's entry (None: none, unreadable, or of another version)."""
        if self._kv is None:
            return None
        try:
            entry = await self._kv.get(run_id)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        except (nats.errors.Error, OSError) as exc:
            log.warning("ui: runs cache not read", run=run_id, error=str(exc))
            return None
        return CachedRun.decode(entry.value) if entry.value else None

    async def put(self, run_id: str, entry: CachedRun) -> None:
        """Write the run's entry (a failure is logged: the next start refolds the run)."""
        if self._kv is None:
            return
        try:
            await self._kv.put(run_id, entry.encode())
        except (nats.errors.Error, OSError) as exc:
            log.warning("ui: runs cache not written", run=run_id, error=str(exc))
