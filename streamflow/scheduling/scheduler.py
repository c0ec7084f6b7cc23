"""The default :class:`~streamflow.core.scheduling.Scheduler`: places jobs by a ``Policy``.

The Scheduler actor (``actors/scheduler.py``) owns one per run. It folds the run's events
into it (the locations of each deployment, what runs where, where data is: the synchronous
``record_*``/``release`` methods, since a fold does no I/O), and queues each requested job
with :meth:`DefaultScheduler.submit` (a plain record and a callback, no task per waiting job;
requests with binding filters await :meth:`DefaultScheduler.schedule_filtered`), recording
each answer as ``JobScheduled``.

Placement: ``schedule``/``submit`` queue the request and grant it as soon as one of its targets (in
order of preference) has room: for each location the scheduler checks the free cores,
memory and slots from its own bookkeeping, then asks the :class:`Policy` to choose among
those with room (default ``data_locality``). A target with ``locations: N`` needs N distinct
locations at once. Waiting requests are granted in arrival order whenever resources free up
(:meth:`notify_status`) or a deployment offers new locations (:meth:`record_locations`); a
request that does not fit yet does not block the ones behind it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from streamflow.core.data import DataLocation
from streamflow.core.deployment import BindingFilter, ExecutionLocation, Target
from streamflow.core.scheduling import AvailableLocation, Hardware, JobAllocation, Policy, Scheduler
from streamflow.core.workflow import Job, Status
from streamflow.errors import WorkflowExecutionError

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext

__all__ = ["DefaultScheduler", "LocationCapacity", "local_capacity", "targets_of"]

log = structlog.get_logger("streamflow.scheduler")

_TERMINAL = frozenset({Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.SKIPPED})
_CHUNK = 16  # requests taken from the queue's head at a time by a dispatch pass


@dataclass(frozen=True)
class LocationCapacity:
    """What a location offers.

    Attributes:
        deployment: the deployment name.
        name: the location name.
        cores: cores available to jobs.
        memory: memory available to jobs, MiB (0: not accounted).
        hostname: its host name, if known.
        slots: how many jobs may run there at once (0: as many as its cores allow).
    """

    deployment: str
    name: str
    cores: float
    memory: float = 0.0
    hostname: str | None = None
    slots: int = 0


def local_capacity() -> LocationCapacity:
    """The capacity of this machine as the ``__LOCAL__`` deployment's only location."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError):
        memory = 0.0
    return LocationCapacity("__LOCAL__", "localhost", float(os.cpu_count() or 1), float(memory), "localhost")


@dataclass(eq=False, slots=True)
class _Request:
    """A waiting request: awaited through ``future`` (:meth:`DefaultScheduler.schedule`), or a
    plain record whose ``granted`` callback takes the answer (:meth:`DefaultScheduler.submit`),
    its job and targets built by ``build`` only when the dispatcher first examines it."""

    job: Job | None
    targets: list[Target]
    hardware: Hardware
    future: asyncio.Future[JobAllocation] | None = field(default=None, repr=False)
    build: Callable[[], tuple[Job, list[Target]]] | None = field(default=None, repr=False)
    granted: Callable[[JobAllocation], None] | None = field(default=None, repr=False)


def _default_policy() -> Policy:
    from streamflow.scheduling.policy import DataLocalityPolicy

    return DataLocalityPolicy()


class DefaultScheduler(Scheduler):
    """Places jobs among their targets' locations, asking a :class:`Policy` to choose.

    Args:
        context: the StreamFlow context (None when owned by a run's actor host).
        policy: how to choose among locations with room (default ``data_locality``).
        locations: deployment name -> the locations it offers without being deployed
            (``__LOCAL__``: this machine).
        retry_delay: accepted for compatibility with StreamFlow files; placement is decided
            again whenever resources free up, never by polling.
        filters: the run's binding filters by name (:meth:`schedule_filtered` applies them).
    """

    def __init__(self, context: StreamFlowContext | None = None, policy: Policy | None = None,
                 locations: Mapping[str, list[LocationCapacity]] | None = None,
                 retry_delay: float | None = None, filters: Mapping[str, BindingFilter] | None = None) -> None:
        self.context = context  # type: ignore[assignment]
        self.policy = policy or _default_policy()
        self.filters = dict(filters or {})
        self.static: dict[str, list[LocationCapacity]] = {k: list(v) for k, v in (locations or {}).items()}
        self.deployed: dict[str, list[LocationCapacity]] = {}
        self.allocations: dict[str, JobAllocation] = {}
        self.used: dict[tuple[str, str], tuple[float, float]] = {}
        self.running: dict[tuple[str, str], set[str]] = {}
        self.holdings: dict[str, dict[tuple[str, str], int]] = {}  # path -> (deployment, location) -> bytes
        self._done: set[str] = set()  # released jobs: their allocation is dropped, only the name is kept
        self._queue: dict[str, _Request] = {}
        self._dispatching = False
        self._again = False

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of ``scheduling.scheduler.config`` (no options)."""
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "properties": {"retry_delay": {
                    "type": "number", "minimum": 0,
                    "description": "Accepted for compatibility; placement is reconsidered when resources "
                                   "free up, not by polling"}},
                "additionalProperties": False}

    # --- the fold (synchronous, no I/O) ---------------------------------------------------------

    @property
    def locations(self) -> dict[str, list[LocationCapacity]]:
        """Every known deployment's locations."""
        return {**self.static, **self.deployed}

    def record_locations(self, deployment: str, locations: list[LocationCapacity]) -> None:
        """A deployment (re)offers its locations."""
        self.deployed[deployment] = list(locations)

    def record_data(self, path: str, deployment: str, location: str, size: int) -> None:
        """``path`` (its identity on this machine) has a copy on a location."""
        self.holdings.setdefault(path, {})[(deployment, location)] = size

    def record_allocation(self, job: str, deployment: str, locations: Sequence[str], cores: float,
                          memory: float) -> None:
        """A job was placed (idempotent: its first placement counts)."""
        if job in self.allocations or job in self._done:
            return
        self.allocations[job] = JobAllocation(
            job=job, target=Target(deployment=_deployment(deployment)), status=Status.FIREABLE,
            locations=[ExecutionLocation(name=name, deployment=deployment) for name in locations],
            hardware=Hardware(cores=cores, memory=memory))
        for name in locations:
            key = (deployment, name)
            used_cores, used_memory = self.used.get(key, (0.0, 0.0))
            self.used[key] = (used_cores + cores, used_memory + memory)
            self.running.setdefault(key, set()).add(job)

    def release(self, job: str) -> bool:
        """A job ended: free what it held. Returns whether anything was freed.

        Its allocation is dropped (a 100,000-job run must not keep one per finished job);
        only its name stays, so that placing or releasing it again changes nothing.
        """
        allocation = self.allocations.get(job)
        if allocation is None or allocation.status in _TERMINAL:
            return False
        allocation.status = Status.COMPLETED
        del self.allocations[job]
        self._done.add(job)
        for location in allocation.locations:
            key = (location.deployment, location.name)
            cores, memory = self.used.get(key, (0.0, 0.0))
            self.used[key] = (max(0.0, cores - allocation.hardware.cores),
                              max(0.0, memory - allocation.hardware.memory))
            self.running.get(key, set()).discard(job)
        return True

    # --- the Scheduler interface ----------------------------------------------------------------

    async def schedule(self, job: Job, targets: Sequence[Target], hardware_requirement: Hardware | None) -> JobAllocation:
        """Place ``job`` on one of ``targets`` (in order), waiting until one has room."""
        if job.name in self.allocations:
            return self.allocations[job.name]
        if job.name in self._done:
            raise WorkflowExecutionError(f"job {job.name} already ended: it is not placed again")
        future: asyncio.Future[JobAllocation] = asyncio.get_running_loop().create_future()
        self._queue[job.name] = _Request(job, list(targets), hardware_requirement or Hardware(cores=1.0), future)
        await self.dispatch()
        try:
            return await future
        finally:
            if self._queue.pop(job.name, None) is not None:
                # Left before it was granted (cancelled): a running pass counts positions in
                # the queue, so it must go round again not to skip the request behind this one.
                self._again = True

    def submit(self, name: str, hardware: Hardware, build: Callable[[], tuple[Job, list[Target]]],
               granted: Callable[[JobAllocation], None]) -> None:
        """Queue a request as a plain record: no task, future or coroutine waits for it.

        What :meth:`schedule` does, for callers that hold many waiting requests (a scatter
        queues all its jobs at once: a task per request costs kilobytes each). ``build``
        makes the job and its targets (in order of preference) when the dispatcher first
        examines the request, and ``granted`` receives the allocation (synchronously, from
        :meth:`dispatch`; it must not raise). Call :meth:`dispatch` after submitting. A job
        already placed, or queued, is ignored.
        """
        if name in self.allocations or name in self._done or name in self._queue:
            return
        self._queue[name] = _Request(None, [], hardware, build=build, granted=granted)

    async def schedule_filtered(self, job: Job, targets: Sequence[Target], filters: Sequence[str],
                                hardware_requirement: Hardware | None) -> JobAllocation:
        """:meth:`schedule` after the named binding filters reordered ``targets`` (in turn).

        Raises:
            WorkflowExecutionError: a filter name is unknown or a filter left no target.
        """
        ordered = list(targets)
        for name in filters:
            chosen = self.filters.get(name)
            if chosen is None:
                raise WorkflowExecutionError(f"job {job.name}: no binding filter named {name!r}")
            ordered = await chosen.get_targets(job, ordered)
            if not ordered:
                raise WorkflowExecutionError(f"job {job.name}: binding filter {name!r} left no target")
        return await self.schedule(job, ordered, hardware_requirement)

    async def notify_status(self, job_name: str, status: Status) -> None:
        """A terminal status frees the job's resources, and waiting requests are reconsidered."""
        if status in _TERMINAL and self.release(job_name):
            await self.dispatch()

    async def get_allocation(self, job_name: str) -> JobAllocation | None:
        """The allocation of ``job_name``, if it was placed."""
        return self.allocations.get(job_name)

    async def close(self) -> None:
        """Cancel the requests still waiting (submitted ones are dropped). Idempotent."""
        for request in self._queue.values():
            if request.future is not None:
                request.future.cancel()
        self._queue.clear()

    # --- placement ------------------------------------------------------------------------------

    async def dispatch(self) -> None:
        """Grant the waiting requests that fit now, in arrival order.

        The queue is walked from its head a few requests at a time and the walk stops at
        the first request once no location has room: with every core busy a pass costs
        O(1) whatever the number of waiting requests (a copy of the whole queue per pass
        made a run's scheduling quadratic in its pending jobs).
        """
        if self._dispatching:
            self._again = True  # the running pass may have missed what changed: it goes round again
            return
        self._dispatching = True
        try:
            self._again = True
            while self._again:
                self._again = False
                kept = 0  # requests at the head of the queue examined in this pass and left waiting
                while True:
                    chunk = list(itertools.islice(self._queue.items(), kept, kept + _CHUNK))
                    if not chunk:
                        break
                    full = False
                    for name, request in chunk:
                        if (request.future is not None and request.future.done()) or (
                                self._queue.get(name) is not request):
                            kept += name in self._queue
                            continue
                        if self._full(request.hardware.cores):
                            full = True
                            break
                        allocation = await self._place(request)
                        if allocation is not None:
                            self._queue.pop(name, None)
                            if request.future is not None:
                                request.future.set_result(allocation)
                            elif request.granted is not None:
                                request.granted(allocation)
                        else:
                            kept += 1
                    if full:
                        break
        finally:
            self._dispatching = False

    def _full(self, cores: float) -> bool:
        for locs in self.locations.values():
            for loc in locs:
                if self.used.get((loc.deployment, loc.name), (0.0, 0.0))[0] + min(cores, loc.cores) <= loc.cores + 1e-9:
                    return False
        return True

    def _fits(self, loc: LocationCapacity, hardware: Hardware) -> tuple[float, float] | None:
        """The cores and memory the job gets on ``loc`` if they are free there now.

        A request larger than the whole location is clamped to it (with a warning),
        otherwise it could never run.
        """
        cores = min(hardware.cores, loc.cores)
        memory = min(hardware.memory, loc.memory) if loc.memory else 0.0
        used_cores, used_memory = self.used.get((loc.deployment, loc.name), (0.0, 0.0))
        if used_cores + cores > loc.cores + 1e-9 or (loc.memory and used_memory + memory > loc.memory + 1e-9):
            return None
        if loc.slots and len(self.running.get((loc.deployment, loc.name), ())) >= loc.slots:
            return None
        return cores, memory

    def _data_locations(self, job: Job) -> list[DataLocation]:
        from actors.data_manager import iter_paths

        return [DataLocation(name=location, deployment=deployment, path=path, relpath=path, available=True,
                             size=size)
                for path, _ in iter_paths(job.inputs)
                for (deployment, location), size in self.holdings.get(path, {}).items()]

    async def _place(self, request: _Request) -> JobAllocation | None:
        job = request.job
        if job is None:
            assert request.build is not None
            job, request.targets = request.build()
            request.job = job
        data: list[DataLocation] | None = None
        for target in request.targets:
            locs = self.locations.get(target.deployment.name) or []
            if len(locs) < target.locations:
                continue
            if data is None:
                data = self._data_locations(job)
            chosen: list[LocationCapacity] = []
            cores = memory = 0.0
            for _ in range(target.locations):
                options: dict[str, AvailableLocation] = {}
                by_name: dict[str, LocationCapacity] = {}
                for loc in locs:
                    fit = None if loc in chosen else self._fits(loc, request.hardware)
                    if fit is None:
                        continue
                    cores, memory = fit
                    # Room is decided above, from the bookkeeping: the policy only chooses.
                    options[loc.name] = AvailableLocation(name=loc.name, deployment=loc.deployment,
                                                          hostname=loc.hostname, service=target.service)
                    by_name[loc.name] = loc
                if not options:
                    break
                picked = await self.policy.get_location(job, Hardware(cores=cores, memory=memory), options,
                                                        self.allocations, {}, data)
                if picked is None or picked.name not in by_name:
                    break
                chosen.append(by_name[picked.name])
            if len(chosen) == target.locations:
                if cores < request.hardware.cores:
                    log.warning("resource_request_clamped", job=job.name, requested=request.hardware.cores,
                                granted=cores)
                self.record_allocation(job.name, target.deployment.name, [c.name for c in chosen],
                                       cores, memory)
                allocation = self.allocations[job.name]
                allocation.locations = [
                    ExecutionLocation(name=c.name, deployment=c.deployment, hostname=c.hostname) for c in chosen]
                return allocation
        return None


def _deployment(name: str) -> Any:
    from streamflow.core.deployment import DeploymentConfig

    return DeploymentConfig(name=name, type="local" if name == "__LOCAL__" else "remote")


def targets_of(names: Iterable[str], service: str | None, locations: int) -> list[Target]:
    """The :class:`Target` objects of a request's bound deployments, in order of preference."""
    return [Target(deployment=_deployment(name), service=service, locations=locations) for name in names]
