"""Run leases in JetStream KV: who hosts a run's actors right now, and its fencing epoch.

A lease is the key ``<run>`` of bucket ``sf_leases``, created with compare-and-swap and
renewed by its owner every ``ttl / 3`` seconds. Its KV revision is the *fencing epoch*
written into every event of the owner. A process that wants to host a run (``streamflow
resume``) gets the lease only if nobody holds it, if the holder stopped renewing it for
longer than ``ttl``, or if the holder is a dead process on this same host. Two live owners
can therefore never both host a run; and a paused stale owner is fenced by the per-subject
expected-sequence checks of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from dataclasses import dataclass

import msgspec
import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from streamflow.errors import LeaseError

__all__ = ["LEASE_BUCKET", "Lease", "LeaseInfo", "acquire_lease"]

LEASE_BUCKET = "sf_leases"


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a lease records.

    Attributes:
        host: the owner's host name.
        pid: the owner's process id.
        renewed_at: when it was last renewed (seconds since the epoch).
        ttl: seconds after which an unrenewed lease is considered abandoned.
    """

    host: str
    pid: int
    renewed_at: float
    ttl: float


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    try:
        return await js.key_value(LEASE_BUCKET)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
        return await js.create_key_value(api.KeyValueConfig(bucket=LEASE_BUCKET, history=1,
                                                            replicas=max(1, replicas)))


@dataclass
class Lease:
    """A held lease; renew it with :meth:`keep_alive`, give it back with :meth:`release`."""

    kv: KeyValue
    run_id: str
    revision: int
    ttl: float

    @property
    def epoch(self) -> int:
        """The fencing epoch (the lease's KV revision when it was acquired)."""
        return self._epoch

    def __post_init__(self) -> None:
        self._epoch = self.revision

    async def keep_alive(self, stop: asyncio.Event) -> None:
        """Renew the lease every ``ttl / 3`` seconds until ``stop`` is set.

        Raises:
            LeaseError: another owner took the lease.
        """
        last_renewal = time.monotonic()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.ttl / 3)
            if stop.is_set():
                return
            info = LeaseInfo(host=socket.gethostname(), pid=os.getpid(), renewed_at=time.time(), ttl=self.ttl)
            try:
                self.revision = await self.kv.update(self.run_id, msgspec.json.encode(info), last=self.revision)
                last_renewal = time.monotonic()
            except nats.js.errors.KeyWrongLastSequenceError as exc:
                raise LeaseError(f"lease of run {self.run_id} was taken by another process") from exc
            except Exception as exc:  # leader elections, timeouts: transient until the ttl runs out
                if time.monotonic() - last_renewal > self.ttl:
                    raise LeaseError(f"lease of run {self.run_id} could not be renewed for {self.ttl:.0f}s: "
                                     f"{exc!r}") from exc

    async def release(self) -> None:
        """Give the lease back (best effort)."""
        with contextlib.suppress(Exception):
            await self.kv.delete(self.run_id, last=self.revision)


async def acquire_lease(js: JetStreamContext, run_id: str, *, ttl: float = 15.0, replicas: int | None = None) -> Lease:
    """Take the lease of ``run_id``.

    Raises:
        LeaseError: a live process holds it.
    """
    if replicas is None:
        try:
            replicas = int(os.environ.get("STREAMFLOW_REPLICAS", "1"))
        except ValueError:
            replicas = 1
    kv = await _bucket(js, replicas)
    info = LeaseInfo(host=socket.gethostname(), pid=os.getpid(), renewed_at=time.time(), ttl=ttl)
    payload = msgspec.json.encode(info)
    try:
        revision = await kv.create(run_id, payload)
        return Lease(kv, run_id, revision, ttl)
    except nats.js.errors.KeyWrongLastSequenceError:
        pass
    try:
        entry = await kv.get(run_id)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        revision = await kv.put(run_id, payload)
        return Lease(kv, run_id, revision, ttl)
    assert entry.value is not None and entry.revision is not None
    holder = msgspec.json.decode(entry.value, type=LeaseInfo)
    stale = time.time() - holder.renewed_at > holder.ttl
    dead_here = holder.host == socket.gethostname() and not _alive(holder.pid)
    if not (stale or dead_here or (holder.host == info.host and holder.pid == info.pid)):
        raise LeaseError(
            f"run {run_id} is live in process {holder.pid} on {holder.host} (lease renewed "
            f"{time.time() - holder.renewed_at:.0f}s ago); stop it first or wait {holder.ttl:.0f}s")
    try:
        revision = await kv.update(run_id, payload, last=entry.revision)
    except nats.js.errors.KeyWrongLastSequenceError as exc:
        raise LeaseError(f"run {run_id}: another process took the lease first") from exc
    return Lease(kv, run_id, revision, ttl)
