"""Scheduling: hardware, available locations, allocations, policies and the scheduler."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from streamflow.core.context import SchemaEntity
from streamflow.core.deployment import ExecutionLocation, Target
from streamflow.core.workflow import Status

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.core.data import DataLocation
    from streamflow.core.workflow import Job

__all__ = [
    "AvailableLocation",
    "Hardware",
    "JobAllocation",
    "LocationAllocation",
    "Policy",
    "Scheduler",
]


class Hardware(msgspec.Struct, frozen=True, kw_only=True):
    """An amount of hardware: needed by a job, or offered by a location.

    Attributes:
        cores: number of cores (may be fractional).
        memory: memory in MB.
        storage: mount point → space in MB.
    """

    cores: float = 0.0
    memory: float = 0.0
    storage: dict[str, float] = msgspec.field(default_factory=dict)

    def __add__(self, other: Hardware) -> Hardware:
        """Return the sum of two amounts (storage summed per mount point)."""
        if not isinstance(other, Hardware):
            return NotImplemented
        storage = dict(self.storage)
        for mount, size in other.storage.items():
            storage[mount] = storage.get(mount, 0.0) + size
        return Hardware(cores=self.cores + other.cores, memory=self.memory + other.memory, storage=storage)

    def __sub__(self, other: Hardware) -> Hardware:
        """Return the difference of two amounts (storage per mount point; may go negative)."""
        if not isinstance(other, Hardware):
            return NotImplemented
        storage = dict(self.storage)
        for mount, size in other.storage.items():
            storage[mount] = storage.get(mount, 0.0) - size
        return Hardware(cores=self.cores - other.cores, memory=self.memory - other.memory, storage=storage)

    def satisfies(self, other: Hardware) -> bool:
        """Whether this amount covers ``other`` (cores, memory, and each mount point of ``other``)."""
        return (
            self.cores >= other.cores
            and self.memory >= other.memory
            and all(self.storage.get(mount, 0.0) >= size for mount, size in other.storage.items())
        )

    @classmethod
    def total(cls, items: Iterable[Hardware]) -> Hardware:
        """Return the sum of ``items`` (zero when empty)."""
        result = cls()
        for item in items:
            result = result + item
        return result


class AvailableLocation(msgspec.Struct, frozen=True, kw_only=True):
    """A location offered by a connector, with its capacity.

    Attributes:
        name: the location name.
        deployment: the deployment name.
        service: the service, if any.
        hostname: the host name or address.
        local: whether it shares this machine's file system.
        slots: how many jobs may run at once; ``None`` means unlimited.
        hardware: the total hardware of the location, if known.
        wraps: the location this one is stacked on.
    """

    name: str
    deployment: str
    service: str | None = None
    hostname: str | None = None
    local: bool = False
    slots: int | None = None
    hardware: Hardware | None = None
    wraps: AvailableLocation | None = None

    @property
    def location(self) -> ExecutionLocation:
        """The :class:`ExecutionLocation` this entry describes."""
        return ExecutionLocation(
            name=self.name,
            deployment=self.deployment,
            service=self.service,
            hostname=self.hostname,
            local=self.local,
            wraps=self.wraps.location if self.wraps is not None else None,
        )


@dataclass
class JobAllocation:
    """Where a job was placed, and its status there.

    Attributes:
        job: the job name.
        target: the target the job was scheduled on.
        locations: the chosen locations.
        status: the job status (FIREABLE and RUNNING jobs hold resources).
        hardware: the hardware reserved for it.
    """

    job: str
    target: Target
    locations: list[ExecutionLocation]
    status: Status
    hardware: Hardware = field(default_factory=Hardware)


@dataclass
class LocationAllocation:
    """The jobs placed on a location.

    Attributes:
        name: the location name.
        deployment: the deployment name.
        jobs: names of the jobs allocated there (whatever their status).
    """

    name: str
    deployment: str
    jobs: list[str] = field(default_factory=list)


class Policy(SchemaEntity):
    """Chooses a location for a job. A pure decision: no I/O, no waiting, no side effects."""

    @abstractmethod
    async def get_location(
        self,
        job: Job,
        hardware_requirement: Hardware | None,
        available_locations: Mapping[str, AvailableLocation],
        jobs: Mapping[str, JobAllocation],
        locations: Mapping[str, Mapping[str, LocationAllocation]],
        data_locations: Sequence[DataLocation],
    ) -> AvailableLocation | None:
        """Choose one of ``available_locations`` for ``job``.

        Args:
            job: the job to place.
            hardware_requirement: what the job needs; ``None`` means nothing in particular.
            available_locations: candidate locations by name (of one target).
            jobs: current allocations by job name.
            locations: current allocations by deployment name, then location name.
            data_locations: the known copies of the job's input files.

        Returns:
            The chosen location, or ``None`` if none can take the job now.
        """


class Scheduler(SchemaEntity):
    """Places jobs on locations, keeping track of what runs where.

    Args:
        context: the StreamFlow context.
    """

    def __init__(self, context: StreamFlowContext) -> None:
        self.context = context

    @abstractmethod
    async def schedule(
        self, job: Job, targets: Sequence[Target], hardware_requirement: Hardware | None
    ) -> JobAllocation:
        """Place ``job`` on one of ``targets`` (in order), waiting until one has room.

        Raises:
            streamflow.errors.WorkflowExecutionError: if no target can ever take the job.
        """

    @abstractmethod
    async def notify_status(self, job_name: str, status: Status) -> None:
        """Record a job status change; a terminal status frees its resources."""

    @abstractmethod
    async def get_allocation(self, job_name: str) -> JobAllocation | None:
        """Return the allocation of ``job_name``, if it was scheduled."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources. Idempotent."""
