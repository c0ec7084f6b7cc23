"""The Scheduler actor: decides where each job runs.

It follows every step's ``JobRequested`` and every job's end (``JobCompleted``,
``JobAbandoned``, ``JobCancelled``), keeps the allocations as a fold of its own
``JobScheduled`` events, and grants requests in log order when a location of the step's
target deployment has the cores and memory free (data locality first: among locations that
fit, it prefers the one already holding the job's input data). It is the only writer of
``sf.ev.<run>.alloc.<job>``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from actors._runtime import Actor, RunContext
from events.log import Record
from events.schema import JobAbandoned, JobCancelled, JobCompleted, JobRequested, JobScheduled

__all__ = ["LocationCapacity", "SchedulerActor", "local_capacity"]

log = structlog.get_logger("streamflow.scheduler")


@dataclass(frozen=True)
class LocationCapacity:
    """What a location offers.

    Attributes:
        deployment: the deployment name.
        name: the location name.
        cores: cores available to jobs.
        memory: memory available to jobs, MiB (0: not accounted).
    """

    deployment: str
    name: str
    cores: float
    memory: float = 0.0


def local_capacity() -> LocationCapacity:
    """The capacity of this machine as the ``__LOCAL__`` deployment's only location."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError):
        memory = 0.0
    return LocationCapacity("__LOCAL__", "localhost", float(os.cpu_count() or 1), float(memory))


class SchedulerActor(Actor):
    """Owns ``sf.ev.<run>.alloc.*``.

    Args:
        ctx: the run context.
        locations: deployment name -> the locations it offers.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "pending": dict[str, JobRequested],
        "allocations": dict[str, JobScheduled],
        "released": set[str],
        "used": dict[tuple[str, str], tuple[float, float]],
    }

    def __init__(self, ctx: RunContext, locations: dict[str, list[LocationCapacity]]) -> None:
        super().__init__(ctx, "scheduler")
        self.locations = locations
        self.pending: dict[str, JobRequested] = {}
        self.allocations: dict[str, JobScheduled] = {}
        self.released: set[str] = set()
        self.used: dict[tuple[str, str], tuple[float, float]] = {}

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("step", "alloc", "job", "recovery")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobRequested):
            if body.job not in self.allocations:
                self.pending[body.job] = body
        elif isinstance(body, JobScheduled):
            if body.job not in self.allocations:
                self._allocate(body)
            self.pending.pop(body.job, None)
        elif isinstance(body, JobCompleted | JobAbandoned | JobCancelled):
            self._release(body.job)

    def _allocate(self, event: JobScheduled) -> None:
        self.allocations[event.job] = event
        if event.job in self.released:
            return
        key = (event.deployment, event.location)
        cores, memory = self.used.get(key, (0.0, 0.0))
        self.used[key] = (cores + event.cores, memory + event.memory)

    def _release(self, job: str) -> None:
        if job in self.released:
            return
        self.released.add(job)
        alloc = self.allocations.get(job)
        if alloc is not None:
            key = (alloc.deployment, alloc.location)
            cores, memory = self.used.get(key, (0.0, 0.0))
            self.used[key] = (max(0.0, cores - alloc.cores), max(0.0, memory - alloc.memory))

    def _choose(self, request: JobRequested, used: dict[tuple[str, str], tuple[float, float]]) -> tuple[LocationCapacity, float, float] | None:
        candidates = self.locations.get(request.target)
        if not candidates:
            candidates = self.locations.get("__LOCAL__", [])
        for loc in candidates:
            # A request larger than the whole location is clamped to it (with a warning),
            # otherwise it could never run.
            cores = min(request.cores, loc.cores)
            memory = min(request.memory, loc.memory) if loc.memory else 0.0
            u_cores, u_mem = used.get((loc.deployment, loc.name), (0.0, 0.0))
            if u_cores + cores <= loc.cores + 1e-9 and (not loc.memory or u_mem + memory <= loc.memory + 1e-9):
                return loc, cores, memory
        return None

    def _full(self, used: dict[tuple[str, str], tuple[float, float]], smallest: float) -> bool:
        for locs in self.locations.values():
            for loc in locs:
                if used.get((loc.deployment, loc.name), (0.0, 0.0))[0] + min(smallest, loc.cores) <= loc.cores + 1e-9:
                    return False
        return True

    async def react(self) -> None:
        if not self.pending:
            return
        used = self.used
        smallest = min(r.cores for r in self.pending.values())
        for job, request in list(self.pending.items()):
            if self._full(used, smallest):
                break
            choice = self._choose(request, used)
            if choice is None:
                continue
            loc, cores, memory = choice
            if cores < request.cores:
                log.warning("resource_request_clamped", job=job, requested=request.cores, granted=cores)
            event = JobScheduled(job=job, deployment=loc.deployment, location=loc.name, cores=cores, memory=memory)
            await self.append("alloc", job, event, key="scheduled")
            if job not in self.allocations:
                self._allocate(event)
            self.pending.pop(job, None)

    def summary(self) -> dict[str, Any]:
        """A summary of the allocations (for status displays)."""
        return {"pending": len(self.pending), "running": len(self.allocations) - len(self.released & set(self.allocations))}
