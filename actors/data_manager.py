"""The DataManager actor: where data lives, and making job inputs available.

It follows ``JobScheduled`` (make the job's input files and directories available on the
chosen location, then append ``InputsStaged``) and ``JobCompleted`` (register the outputs as
PRIMARY copies: ``DataLocationsRegistered``). Its registry of copies
(:class:`~streamflow.data.manager.DefaultDataManager`, the ``DataManager`` of the run) is a
fold of its own events plus ``DeploymentDeployed``. It is the only writer of
``sf.ev.<run>.data.<job>``.

* On a location that shares this machine's filesystem (``__LOCAL__``, a ``local``
  deployment) nothing has to be copied: inputs are only checked to exist, so a vanished file
  is reported (``InputsLost``) before the job is queued rather than by a confusing tool error.
* On any other location, each input that has no copy there yet is transferred through the
  connectors (from this machine, or from another location holding it) into
  ``<workdir>/<run>/data/<digest of its directory>/<name>`` on the location, its checksum checked there, and
  the copy recorded as ``DataTransferred`` (bytes, checksum, seconds), so a resumed run never
  moves it again; ``InputsStaged`` then carries the path of every input on the location and
  the bytes moved. The outputs of a job that ran there stay there (its output directory is
  registered for that location) and are mirrored here by the worker, so a later job on the
  same location finds them without a transfer.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import posixpath
import time
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import structlog

from actors._runtime import Actor, RunContext
from events.backoff import Backoff
from events.log import Record
from events.schema import (
    DataLocationsRegistered,
    DataTransferred,
    DeploymentDeployed,
    InputsLost,
    InputsStaged,
    JobCompleted,
    JobRequested,
    JobScheduled,
    RegisteredFile,
    StagingFailed,
)
from streamflow.core.data import DataLocation
from streamflow.core.deployment import LOCAL_DEPLOYMENT, ExecutionLocation
from streamflow.data.manager import LOCAL_LOCATION, DefaultDataManager
from streamflow.data.objectstore import is_published
from streamflow.errors import StreamFlowError, TransferError

__all__ = ["DataManagerActor", "iter_paths"]

log = structlog.get_logger("streamflow.data")

STAGING_ATTEMPTS = 3
"""How many times the inputs of a job are sent to its location before the run fails."""


def _path_of(obj: dict[str, Any]) -> str | None:
    path = obj.get("path")
    if isinstance(path, str):
        return path
    location = obj.get("location")
    if isinstance(location, str) and location.startswith("file://"):
        return unquote(urlparse(location).path)
    return None


def iter_paths(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(path, object)`` for every File/Directory (and secondary file) in a CWL value."""
    if isinstance(value, dict):
        cls = value.get("class")
        if cls in ("File", "Directory"):
            path = _path_of(value)
            if path is not None:
                yield path, value
            for sec in value.get("secondaryFiles") or []:
                yield from iter_paths(sec)
            if cls == "Directory":
                for item in value.get("listing") or []:
                    yield from iter_paths(item)
            return
        for item in value.values():
            yield from iter_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_paths(item)


class DataManagerActor(Actor):
    """Owns ``sf.ev.<run>.data.*``.

    Args:
        ctx: the run context.
        shared: deployments whose locations share this process's filesystem (besides those
            whose ``DeploymentDeployed`` says so).
        data: the run's DataManager, with the deployment manager its transfers go through
            (None: a registry that cannot transfer; enough where every location is shared).
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "requests": dict[str, dict[str, Any]],
        "to_stage": dict[str, JobScheduled],
        "staged": set[str],
        "to_register": dict[str, JobCompleted],
        "registered": set[str],
        "locations": dict[str, tuple[str, str]],
        "copies": dict[str, dict[tuple[str, str], DataLocation]],
        "lost": dict[str, int],
        "waiting": set[str],
        "remote": dict[tuple[str, str], str],
    }

    def __init__(self, ctx: RunContext, shared: set[str] | None = None, data: DefaultDataManager | None = None) -> None:
        super().__init__(ctx, "data-manager")
        self.shared = shared or {LOCAL_DEPLOYMENT}
        self.data = data or DefaultDataManager()
        self.requests: dict[str, dict[str, Any]] = {}
        self.to_stage: dict[str, JobScheduled] = {}
        self.staged: set[str] = set()
        self.to_register: dict[str, JobCompleted] = {}
        self.registered: set[str] = set()
        self.locations: dict[str, tuple[str, str]] = {}
        self.copies: dict[str, dict[tuple[str, str], DataLocation]] = self.data._copies
        self.lost: dict[str, int] = {}  # job -> how many losses were recorded
        self.waiting: set[str] = set()  # jobs whose inputs are lost, waiting for a rollback
        self.remote: dict[tuple[str, str], str] = {}  # (deployment, location) -> its workdir, if not shared
        self._inflight: dict[tuple[str, str, str], asyncio.Future[str]] = {}
        self._resolved: dict[tuple[str, str], ExecutionLocation] = {}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        self.data._copies = self.copies

    @property
    def registry(self) -> dict[str, set[tuple[str, str]]]:
        """path -> the (deployment, location) pairs holding it (what the golden logs compare)."""
        return {path: set(copies) for path, copies in self.copies.items()}

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("data", "alloc", "job", "step", "deploy")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobRequested):
            self.requests[body.job] = body.inputs
        elif isinstance(body, JobScheduled):
            self.locations[body.job] = (body.deployment, body.location)
            if body.job not in self.staged:
                self.to_stage[body.job] = body
        elif isinstance(body, StagingFailed):
            self.to_stage.pop(body.job, None)
            self.staged.add(body.job)
        elif isinstance(body, InputsStaged):
            self.staged.add(body.job)
            self.to_stage.pop(body.job, None)
            self.waiting.discard(body.job)
        elif isinstance(body, InputsLost):
            self.lost[body.job] = max(self.lost.get(body.job, 0), body.attempt)
            self.waiting.add(body.job)
        elif isinstance(body, JobCompleted):
            if body.job not in self.registered:
                self.to_register[body.job] = body
            # A producer ran again (rollback): jobs waiting for lost data may go on.
            for job in self.waiting:
                if job in self.locations:
                    self.to_stage[job] = JobScheduled(job=job, deployment=self.locations[job][0],
                                                      location=self.locations[job][1])
        elif isinstance(body, DataLocationsRegistered):
            self.registered.add(body.job)
            self.to_register.pop(body.job, None)
            for item in body.files:
                if body.location_paths:  # mirrored here, the original stays there
                    self.data.record(LOCAL_LOCATION, item.path, item.path, size=item.size)
                else:
                    self.data.record(_location(body.deployment, body.location), item.path, item.path, size=item.size)
            for here, there in body.location_paths.items():
                self.data.record(_location(body.deployment, body.location), there, here)
        elif isinstance(body, DataTransferred):
            self.data.record(_location(body.deployment, body.location), body.dst_path, body.path, size=body.bytes)
        elif isinstance(body, DeploymentDeployed):
            # A resumed run deploys again: copies on locations that keep their names (hosts,
            # queues) are still there; a redeployed container has a new name, so its old copies
            # are simply never asked for.
            for loc in body.locations:
                if loc.local:
                    self.remote.pop((body.deployment, loc.name), None)
                else:
                    self.remote[(body.deployment, loc.name)] = loc.workdir or "/tmp/streamflow"

    async def react(self) -> None:
        pending = list(self.to_stage.items())
        if len(pending) == 1:  # a job at a time (a chain): no task per job, no task switch
            await self._stage(*pending[0])
        elif pending:
            await asyncio.gather(*(self._stage(job, scheduled) for job, scheduled in pending))
        registering = list(self.to_register.items())
        if len(registering) == 1:
            await self._register(*registering[0])
        elif registering:  # one subject per job: the appends are pipelined
            results = await asyncio.gather(*(self._register(job, completed) for job, completed in registering),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

    async def _register(self, job: str, completed: JobCompleted) -> None:
        deployment, location = self.locations.get(job, (LOCAL_DEPLOYMENT, "localhost"))
        files = [RegisteredFile(path=p, kind=str(obj.get("class")), size=int(obj.get("size") or 0),
                                checksum=obj.get("checksum"))
                 for p, obj in iter_paths(completed.outputs)]
        await self.append("data", job, DataLocationsRegistered(job=job, deployment=deployment, location=location,
                                                                files=files, location_paths=completed.location_paths),
                          key="registered")
        self.registered.add(job)
        self.to_register.pop(job, None)

    async def _stage(self, job: str, scheduled: JobScheduled) -> None:
        if job not in self.to_stage:
            return
        inputs = self.requests.get(job, {})
        key = (scheduled.deployment, scheduled.location)
        if key in self.remote and scheduled.deployment not in self.shared:
            backoff = Backoff(initial=2.0, maximum=30.0)
            for attempt in range(1, STAGING_ATTEMPTS + 1):
                try:
                    count, moved, paths = await self._stage_remote(job, scheduled, inputs)
                    break
                except _Lost as lost:
                    await self._report_lost(job, lost.paths)
                    return
                except StreamFlowError as exc:
                    log.warning("staging_failed", job=job, attempt=attempt, error=str(exc), exc_info=True)
                    if attempt == STAGING_ATTEMPTS or not exc.retryable:
                        await self.append("data", job, StagingFailed(
                            job=job, deployment=scheduled.deployment, location=scheduled.location,
                            error=str(exc), attempts=attempt), key="staging-failed")
                        self.to_stage.pop(job, None)
                        return
                    await backoff.wait()
            event = InputsStaged(job=job, location=scheduled.location, deployment=scheduled.deployment,
                                 transferred=count, bytes=moved, paths=paths)
        else:
            missing = [p for p, obj in iter_paths(inputs) if obj.get("class") == "File" and not os.path.exists(p)]
            if missing:
                # Produced on a machine that shares no filesystem with this one, and published.
                missing = [p for p in missing if not await is_published(self.ctx.log.js, p)]
            if missing:
                await self._report_lost(job, missing)
                return
            event = InputsStaged(job=job, location=scheduled.location, transferred=0)
        await self.append("data", job, event, key="staged")
        self.staged.add(job)
        self.to_stage.pop(job, None)

    async def _report_lost(self, job: str, missing: list[str]) -> None:
        self.to_stage.pop(job, None)
        if job in self.waiting:
            return  # already reported; a rollback is on its way
        attempt = self.lost.get(job, 0) + 1
        log.warning("inputs_lost", job=job, paths=missing[:5])
        await self.append("data", job, InputsLost(job=job, paths=missing, attempt=attempt), key=f"lost/{attempt}")
        self.lost[job] = attempt
        self.waiting.add(job)

    async def _stage_remote(self, job: str, scheduled: JobScheduled,
                            inputs: dict[str, Any]) -> tuple[int, int, dict[str, str]]:
        """Make every input present on the job's location; return (copies, bytes, paths there)."""
        deployment, name = scheduled.deployment, scheduled.location
        paths: dict[str, str] = {}
        count = moved = 0
        missing: list[str] = []
        for path, obj in iter_paths(inputs):
            there = self.data.copy_on(path, deployment, name)
            if there is None:
                flight = (path, deployment, name)
                if flight in self._inflight:  # another job is sending it there right now
                    there = await asyncio.shield(self._inflight[flight])
                else:
                    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                    self._inflight[flight] = future
                    try:
                        there, size = await self._transfer(job, path, obj, deployment, name)
                        future.set_result(there)
                    except BaseException as exc:
                        future.set_exception(exc if isinstance(exc, Exception) else TransferError(str(exc)))
                        future.exception()  # retrieved: awaited by nobody else, maybe
                        if isinstance(exc, _Lost):
                            missing.extend(exc.paths)
                            continue
                        raise
                    finally:
                        del self._inflight[flight]
                    count += 1
                    moved += size
            paths[path] = there
        if missing:
            raise _Lost(missing)
        return count, moved, paths

    async def _transfer(self, job: str, path: str, obj: dict[str, Any], deployment: str,
                        name: str) -> tuple[str, int]:
        source = await self.data.get_source_location(path, deployment)
        if source is None:
            raise _Lost([path])
        destination = await self._resolve(deployment, name)
        # Files of one directory here land in one directory there: a primary file and its
        # secondary files (siblings, found by name patterns) stay side by side.
        parent, base = posixpath.split(path.rstrip("/") or "/")
        digest = hashlib.sha1(parent.encode(), usedforsecurity=False).hexdigest()[:16]
        dst = posixpath.join(self.remote[(deployment, name)], self.ctx.run_id, "data", digest, base or "root")
        src_location = (LOCAL_LOCATION if source.deployment == LOCAL_DEPLOYMENT
                        else await self._resolve(source.deployment, source.name))
        begin = time.monotonic()
        try:
            await self.data.transfer_data(src_location, source.path, [destination], dst)
        except StreamFlowError:
            raise
        except Exception as exc:  # a connector's own failure
            raise TransferError(f"cannot copy {path} to {destination}: {exc}") from exc
        checksum = obj.get("checksum") if obj.get("class") == "File" else None
        if isinstance(checksum, str) and checksum.startswith("sha1$"):
            await self._verify(destination, dst, checksum)
        size = _size(source.path) if source.deployment == LOCAL_DEPLOYMENT else int(obj.get("size") or 0)
        await self.append("data", job, DataTransferred(
            job=job, path=path, deployment=deployment, location=name, dst_path=dst,
            src_deployment=source.deployment, src_location=source.name, src_path=source.path,
            kind=str(obj.get("class") or "File"), bytes=size, checksum=checksum if isinstance(checksum, str) else None,
            seconds=round(time.monotonic() - begin, 6)),
            key=f"xfer/{deployment}/{name}/{hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:16]}")
        log.info("data_transferred", job=job, path=path, deployment=deployment, location=name, bytes=size)
        return dst, size

    async def _verify(self, location: ExecutionLocation, path: str, checksum: str) -> None:
        connector = await self.data._connector(location.deployment)
        result = await connector.run(location, ["sha1sum", path], capture_output=True)
        if isinstance(result, tuple) and result[1] == 0:
            found = "sha1$" + result[0].split()[0] if result[0].split() else ""
            if found != checksum:
                raise TransferError(f"checksum of {path} on {location} is {found}, expected {checksum}")

    async def _resolve(self, deployment: str, name: str) -> ExecutionLocation:
        key = (deployment, name)
        if key not in self._resolved:
            connector = await self.data._connector(deployment)
            available = await connector.get_available_locations()
            if name not in available:
                raise TransferError(f"deployment {deployment!r} has no location {name!r}", retryable=False)
            self._resolved[key] = available[name].location
        return self._resolved[key]


class _Lost(Exception):
    def __init__(self, paths: list[str]) -> None:
        super().__init__(", ".join(paths))
        self.paths = paths


def _location(deployment: str, name: str) -> ExecutionLocation:
    if deployment == LOCAL_DEPLOYMENT:
        return LOCAL_LOCATION
    return ExecutionLocation(name=name, deployment=deployment)


def _size(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files
                   if not os.path.islink(os.path.join(root, f)))
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
