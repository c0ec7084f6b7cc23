"""The Scheduler actor: decides where each job runs.

It folds every step's ``JobRequested``, the locations each deployment offers
(``DeploymentDeployed``; the implicit ``__LOCAL__`` deployment is this machine), where data
already is (``DataLocationsRegistered``, ``DataTransferred``) and every job's end
(``JobCompleted``, ``JobAbandoned``) into the run's
:class:`~streamflow.scheduling.scheduler.DefaultScheduler`, asks it to place each requested
job (it waits for room and asks the run's scheduling ``Policy``, default ``data_locality``)
and records each answer as ``JobScheduled``. Its allocations are a fold of its own
``JobScheduled`` events. It is the only writer of ``sf.ev.<run>.alloc.<job>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, ClassVar

from actors._runtime import Actor, RunContext
from events.log import Record
from events.schema import (
    DataLocationsRegistered,
    DataTransferred,
    DeploymentDeployed,
    JobAbandoned,
    JobCompleted,
    JobRequested,
    JobScheduled,
)
from streamflow.core.deployment import BindingFilter, Target
from streamflow.core.scheduling import Hardware, JobAllocation, Policy
from streamflow.core.workflow import Job
from streamflow.scheduling.scheduler import DefaultScheduler, LocationCapacity, local_capacity, targets_of

__all__ = ["LocationCapacity", "SchedulerActor", "local_capacity"]


class SchedulerActor(Actor):
    """Owns ``sf.ev.<run>.alloc.*``.

    Args:
        ctx: the run context.
        locations: deployment name -> the locations it offers without being deployed
            (``__LOCAL__``); the others come from ``DeploymentDeployed`` events.
        policy: how to choose among a job's candidate locations (default ``data_locality``).
        filters: the run's binding filters by name.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "pending": dict[str, JobRequested],
        "allocations": dict[str, JobScheduled],
        "released": set[str],
        "deployed": dict[str, list[LocationCapacity]],
        "holdings": dict[str, dict[tuple[str, str], int]],
    }

    def __init__(self, ctx: RunContext, locations: dict[str, list[LocationCapacity]],
                 policy: Policy | None = None, filters: dict[str, BindingFilter] | None = None) -> None:
        super().__init__(ctx, "scheduler")
        self.scheduler = DefaultScheduler(policy=policy, locations={k: v for k, v in locations.items() if v},
                                          filters=filters)
        self.pending: dict[str, JobRequested] = {}
        self.allocations: dict[str, JobScheduled] = {}
        self.released: set[str] = set()
        self._placing: dict[str, asyncio.Task[None]] = {}
        self._finished: list[str] = []
        self._fresh: list[str] | None = None  # requests not yet handed to the scheduler (None: all)
        self._freed = False
        self._hardwares: dict[tuple[float, float], Hardware] = {}
        self._on_grant = self._granted  # one bound method shared by every queued request

    # The scheduler's own fold is the source of truth for these two (snapshotted through here).
    @property
    def deployed(self) -> dict[str, list[LocationCapacity]]:
        return self.scheduler.deployed

    @deployed.setter
    def deployed(self, value: dict[str, list[LocationCapacity]]) -> None:
        self.scheduler.deployed = value

    @property
    def holdings(self) -> dict[str, dict[tuple[str, str], int]]:
        return self.scheduler.holdings

    @holdings.setter
    def holdings(self, value: dict[str, dict[tuple[str, str], int]]) -> None:
        self.scheduler.holdings = value

    @property
    def locations(self) -> dict[str, list[LocationCapacity]]:
        """Every known deployment's locations."""
        return self.scheduler.locations

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        for event in self.allocations.values():
            self._record(event)
        for job in self.released:
            self.scheduler.release(job)

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("step", "alloc", "job", "recovery", "deploy", "data")

    def _record(self, event: JobScheduled) -> None:
        self.scheduler.record_allocation(event.job, event.deployment, event.locations or [event.location],
                                         event.cores, event.memory)

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobRequested):
            if body.job not in self.allocations:
                self.pending[body.job] = body
                if self._fresh is not None:
                    self._fresh.append(body.job)
        elif isinstance(body, JobScheduled):
            if body.job not in self.allocations:
                self.allocations[body.job] = body
                self._record(body)
            self.pending.pop(body.job, None)
        elif isinstance(body, JobCompleted | JobAbandoned):
            if body.job not in self.released:
                self.released.add(body.job)
                self._freed = self.scheduler.release(body.job) or self._freed
        elif isinstance(body, DeploymentDeployed):
            self.scheduler.record_locations(body.deployment, [
                LocationCapacity(body.deployment, loc.name, loc.cores or 1.0, loc.memory, loc.hostname, loc.slots)
                for loc in body.locations])
            self._freed = True
        elif isinstance(body, DataLocationsRegistered):
            for item in body.files:
                self.scheduler.record_data(item.path, body.deployment, body.location, item.size)
                if body.location_paths:  # mirrored on this machine too
                    self.scheduler.record_data(item.path, "__LOCAL__", "localhost", item.size)
        elif isinstance(body, DataTransferred):
            self.scheduler.record_data(body.path, body.deployment, body.location, body.bytes)

    async def react(self) -> None:
        while self._finished:
            job = self._finished.pop()
            task = self._placing.pop(job, None)
            if task is not None and not task.cancelled() and (error := task.exception()) is not None:
                raise error  # the host stops the run with it, as for any actor failure
        if self._fresh is None:  # after a replay or a restore: every pending request is new here
            self._fresh = list(self.pending)
        fresh, self._fresh = self._fresh, []
        submitted = False
        for job in fresh:
            request = self.pending.get(job)
            if request is None or job in self._placing or job in self.allocations:
                continue
            if request.filters:  # binding filters are async: this request waits in a task of its own
                task = self._placing[job] = asyncio.create_task(self._place(request))
                task.add_done_callback(functools.partial(self._done, job))
            else:
                # A plain queue entry: a 100,000-job scatter waits without 100,000 tasks.
                self.scheduler.submit(job, self._hardware(request.cores, request.memory),
                                      functools.partial(self._build, request), self._on_grant)
                submitted = True
        if self._freed or submitted:
            self._freed = False
            await self.scheduler.dispatch()

    def _done(self, job: str, _: object = None) -> None:
        self._finished.append(job)
        self.wake()

    def _hardware(self, cores: float, memory: float) -> Hardware:
        """One shared (read-only) ``Hardware`` per distinct requirement."""
        key = (cores, memory)
        hardware = self._hardwares.get(key)
        if hardware is None:
            hardware = self._hardwares[key] = Hardware(cores=cores, memory=memory)
        return hardware

    def _build(self, request: JobRequested) -> tuple[Job, list[Target]]:
        job = Job(name=request.job, run_id=self.ctx.run_id, step=request.step, tag=request.tag, inputs=request.inputs)
        return job, targets_of(request.targets or [request.target], request.service, max(1, request.locations))

    def _granted(self, allocation: JobAllocation) -> None:
        """A submitted request was placed (called by the dispatcher): record it in a task of its own."""
        job = allocation.job
        if job in self._placing:
            return
        task = self._placing[job] = asyncio.create_task(self._record_placement(job, allocation))
        task.add_done_callback(functools.partial(self._done, job))

    async def _place(self, request: JobRequested) -> None:
        job, targets = self._build(request)
        allocation = await self.scheduler.schedule_filtered(job, targets, request.filters,
                                                            Hardware(cores=request.cores, memory=request.memory))
        await self._record_placement(request.job, allocation)

    async def _record_placement(self, job: str, allocation: JobAllocation) -> None:
        names = [location.name for location in allocation.locations]
        hostnames = [location.hostname or location.name for location in allocation.locations]
        event = JobScheduled(job=job, deployment=allocation.target.deployment.name, location=names[0],
                             cores=allocation.hardware.cores, memory=allocation.hardware.memory,
                             locations=names if len(names) > 1 else [],
                             hostnames=hostnames if len(names) > 1 else [])
        await self.append("alloc", job, event, key="scheduled")
        self.allocations.setdefault(job, event)
        self.pending.pop(job, None)

    async def stop(self) -> None:
        for task in self._placing.values():
            task.cancel()
        for task in self._placing.values():
            with contextlib.suppress(BaseException):
                await task
        await self.scheduler.close()

    def summary(self) -> dict[str, Any]:
        """A summary of the allocations (for status displays)."""
        return {"pending": len(self.pending), "running": len(self.allocations) - len(self.released & set(self.allocations))}
