"""Run leases in JetStream KV: who hosts a run's actors right now, and its fencing epoch.

A lease is a key of bucket ``sf_leases`` (``<run>`` for the run's supervisor group,
``<run>.<group>`` for each other actor group), created with compare-and-swap and renewed
by its owner every ``ttl / 3`` seconds (``ttl``: ``$STREAMFLOW_LEASE_TTL``, default 15 s). Its KV revision is the *fencing epoch*
written into every event of the owner. A process that wants to host a run (``streamflow
resume``) gets the lease only if nobody holds it, if the holder stopped renewing it for
longer than ``ttl``, or if the holder is a dead process on this same host. Two live owners
can therefore never both host a group. A holder that was paused past its ``ttl`` (SIGSTOP,
a VM frozen) and comes back is *fenced*: right after taking a lease the new holder
appends ``LeaseTaken`` on ``sf.ev.<run>.fence.<group>`` (:func:`write_fence`), and every
append of the group's actors is checked by the server against the last event there
(:class:`events.log.Fence`), so none of the stale holder's appends is stored.

Each renewal carries the holder's random ``owner`` token: a renewal whose acknowledgement
was lost (the update landed, the holder did not hear it) is recognised on the next try by
its token, not mistaken for another process taking the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from dataclasses import dataclass

import msgspec
import nats.js.errors
from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from events.log import EventLog, Fence, fence_subject
from events.schema import LeaseTaken
from streamflow.errors import LeaseError

__all__ = ["LEASE_BUCKET", "Lease", "LeaseInfo", "acquire_lease", "lease_key", "lease_ttl", "write_fence"]

LEASE_BUCKET = "sf_leases"


class LeaseInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What a lease records.

    Attributes:
        host: the owner's host name.
        pid: the owner's process id.
        renewed_at: when it was last renewed (seconds since the epoch).
        ttl: seconds after which an unrenewed lease is considered abandoned.
        owner: a random token of the holding :class:`Lease` (empty in leases written by
            older versions).
    """

    host: str
    pid: int
    renewed_at: float
    ttl: float
    owner: str = ""


def lease_ttl() -> float:
    """Seconds a lease lives without renewal: ``$STREAMFLOW_LEASE_TTL`` (default 15)."""
    try:
        value = float(os.environ.get("STREAMFLOW_LEASE_TTL", "15"))
    except ValueError:
        return 15.0
    return value if value > 0 else 15.0


def lease_key(run_id: str, group: str) -> str:
    """The KV key of an actor group's lease (the supervisor group holds the run's own key)."""
    return run_id if group == "supervisor" else f"{run_id}.{group}"


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
    owner: str = ""

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
            info = LeaseInfo(host=socket.gethostname(), pid=os.getpid(), renewed_at=time.time(), ttl=self.ttl,
                             owner=self.owner)
            try:
                self.revision = await self.kv.update(self.run_id, msgspec.json.encode(info), last=self.revision)
                last_renewal = time.monotonic()
            except nats.js.errors.KeyWrongLastSequenceError as exc:
                # Either another process took the lease, or an earlier renewal of ours landed
                # and only its acknowledgement was lost: the stored owner token tells which.
                revision = await self._own_revision()
                if revision is None:
                    raise LeaseError(f"lease {self.run_id} was taken by another process") from exc
                self.revision = revision
                last_renewal = time.monotonic()
            except Exception as exc:  # leader elections, timeouts: transient until the ttl runs out
                if time.monotonic() - last_renewal > self.ttl:
                    raise LeaseError(f"lease of run {self.run_id} could not be renewed for {self.ttl:.0f}s: "
                                     f"{exc!r}") from exc

    async def _own_revision(self) -> int | None:
        """The key's current revision if this lease still holds it (its owner token), else None."""
        try:
            entry = await self.kv.get(self.run_id)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        if entry.value is None or entry.revision is None or not self.owner:
            return None
        try:
            holder = msgspec.json.decode(entry.value, type=LeaseInfo)
        except msgspec.DecodeError:
            return None
        return entry.revision if holder.owner == self.owner else None

    async def release(self) -> None:
        """Give the lease back (best effort)."""
        with contextlib.suppress(Exception):
            await self.kv.delete(self.run_id, last=self.revision)


async def acquire_lease(js: JetStreamContext, run_id: str, *, ttl: float | None = None,
                        replicas: int | None = None) -> Lease:
    """Take the lease ``run_id`` (a key: see :func:`lease_key`).

    Raises:
        LeaseError: a live process holds it.
    """
    if ttl is None:
        ttl = lease_ttl()
    if replicas is None:
        try:
            replicas = int(os.environ.get("STREAMFLOW_REPLICAS", "1"))
        except ValueError:
            replicas = 1
    kv = await _bucket(js, replicas)
    owner = secrets.token_hex(8)
    info = LeaseInfo(host=socket.gethostname(), pid=os.getpid(), renewed_at=time.time(), ttl=ttl, owner=owner)
    payload = msgspec.json.encode(info)
    try:
        revision = await kv.create(run_id, payload)
        return Lease(kv, run_id, revision, ttl, owner)
    except nats.js.errors.KeyWrongLastSequenceError:
        pass
    try:
        entry = await kv.get(run_id)
    except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
        revision = await kv.put(run_id, payload)
        return Lease(kv, run_id, revision, ttl, owner)
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
    return Lease(kv, run_id, revision, ttl, owner)


async def write_fence(log_: EventLog, run_id: str, group: str, lease: Lease) -> Fence:
    """Record that this process holds ``group``'s lease; return the fence its appends carry.

    Written right after the lease is taken and before any of the group's appends: from then
    on the server refuses the appends of every earlier holder of the group.
    """
    subject = fence_subject(run_id, group)
    result = await log_.append(run_id, "fence", group,
                               LeaseTaken(group=group, epoch=lease.epoch, host=socket.gethostname(), pid=os.getpid()),
                               producer=f"host:{socket.gethostname()}/{os.getpid()}", key=f"{lease.epoch}/{lease.owner}",
                               epoch=lease.epoch)
    return Fence(subject=subject, seq=result.stream_seq, epoch=lease.epoch)
