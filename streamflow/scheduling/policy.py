"""The ``data_locality`` policy: run where the input data already is."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from streamflow.core.data import DataLocation, DataType
from streamflow.core.scheduling import AvailableLocation, Hardware, JobAllocation, LocationAllocation, Policy
from streamflow.core.workflow import Job, Status

__all__ = ["ACTIVE_STATUSES", "DataLocalityPolicy"]

ACTIVE_STATUSES = frozenset({Status.FIREABLE, Status.RUNNING})
"""Statuses of jobs that hold a slot and their hardware on their locations."""


def _active_jobs(
    location: AvailableLocation,
    jobs: Mapping[str, JobAllocation],
    locations: Mapping[str, Mapping[str, LocationAllocation]],
) -> list[JobAllocation]:
    allocation = locations.get(location.deployment, {}).get(location.name)
    if allocation is None:
        return []
    return [jobs[name] for name in allocation.jobs if name in jobs and jobs[name].status in ACTIVE_STATUSES]


def has_room(
    location: AvailableLocation,
    hardware_requirement: Hardware | None,
    jobs: Mapping[str, JobAllocation],
    locations: Mapping[str, Mapping[str, LocationAllocation]],
) -> bool:
    """Whether ``location`` has a free slot and enough free hardware for a new job."""
    active = _active_jobs(location, jobs, locations)
    if location.slots is not None and len(active) >= location.slots:
        return False
    if hardware_requirement is None or location.hardware is None:
        return True
    free = location.hardware - Hardware.total(job.hardware for job in active)
    return free.satisfies(hardware_requirement)


class DataLocalityPolicy(Policy):
    """Prefer the location holding the most bytes of the job's inputs; else the first with room.

    Only locations with a free slot and enough free cores, memory and storage (given the
    hardware of their FIREABLE and RUNNING jobs) are candidates. Among them, the one with the
    most bytes of available, valid copies of the inputs wins (ties: the first in
    ``available_locations`` order); when no candidate holds input data, the first candidate.
    Returns ``None`` when no location has room. Pure: no I/O.
    """

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of the policy's ``config`` (no options)."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
        }

    async def get_location(
        self,
        job: Job,
        hardware_requirement: Hardware | None,
        available_locations: Mapping[str, AvailableLocation],
        jobs: Mapping[str, JobAllocation],
        locations: Mapping[str, Mapping[str, LocationAllocation]],
        data_locations: Sequence[DataLocation],
    ) -> AvailableLocation | None:
        """Choose a location for ``job`` (see the class documentation)."""
        candidates = [
            location
            for location in available_locations.values()
            if has_room(location, hardware_requirement, jobs, locations)
        ]
        if not candidates:
            return None
        weights: dict[tuple[str, str], int] = {}
        seen: set[tuple[str, str, str]] = set()
        for data in data_locations:
            if not data.available or data.data_type is DataType.INVALID:
                continue
            if (key := (data.deployment, data.name, data.path)) in seen:
                continue
            seen.add(key)
            weights[(data.deployment, data.name)] = weights.get((data.deployment, data.name), 0) + max(
                data.size, 0
            )
        best = max(candidates, key=lambda loc: weights.get((loc.deployment, loc.name), -1))
        if weights.get((best.deployment, best.name), -1) > 0:
            return best
        # No byte counts: prefer a location holding any input copy, then the first candidate.
        for location in candidates:
            if (location.deployment, location.name) in weights:
                return location
        return candidates[0]
