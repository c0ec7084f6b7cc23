"""``ActorsPlugin``: registers the actor-backed implementations under StreamFlow's extension points.

Published as the entry point ``actors = "actors.plugin:ActorsPlugin"`` of the group
``streamflow.plugin``, it registers:

========================= ========= ===================================================
extension point           name      class
========================= ========= ===================================================
``scheduler``             default   :class:`ActorScheduler` (the :class:`SchedulerActor`)
``data_manager``          default   :class:`ActorDataManager` (the :class:`DataManagerActor`)
``database``              default   :class:`~streamflow.persistence.EventLogDatabase`
========================= ========= ===================================================

The failure managers (``default``, ``retry``, ``dummy``) are the built-in plugin's and are
left alone.

The registry only accepts subclasses of each extension point's interface, and the actors
are not: they fold events and append events, and are hosted per run by
:class:`~actors._runtime.ActorHost`. :class:`ActorScheduler` and :class:`ActorDataManager`
are therefore *façades*: the classes ``streamflow.yml`` names (``scheduling.scheduler``,
``dataManager``), each pointing at the actor that does the work (``actor_class``). Their
imperative methods (``schedule``, ``transfer_data``...) raise a
:class:`~streamflow.errors.StreamFlowError` saying which events carry that decision, since in
this engine nobody calls them: placement is ``JobRequested`` → ``JobScheduled``, data
movement is ``JobScheduled`` → ``InputsStaged`` and ``JobCompleted`` →
``DataLocationsRegistered``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from actors._runtime import Actor
from actors.data_manager import DataManagerActor
from actors.scheduler import SchedulerActor
from streamflow.core.data import DataLocation, DataManager, DataType
from streamflow.core.deployment import ExecutionLocation
from streamflow.core.scheduling import Hardware, JobAllocation, Scheduler
from streamflow.errors import StreamFlowError
from streamflow.persistence import EventLogDatabase
from streamflow.plugins import StreamFlowPlugin

if TYPE_CHECKING:
    from streamflow.core.deployment import Target
    from streamflow.core.workflow import Job, Status

__all__ = ["ActorDataManager", "ActorScheduler", "ActorsPlugin"]


def _by_events(what: str, actor: type[Actor], events: str) -> StreamFlowError:
    return StreamFlowError(
        f"{what} is done by {actor.__module__}.{actor.__qualname__} from the event log ({events}); "
        "this façade is not called imperatively"
    )


class ActorScheduler(Scheduler):
    """The ``default`` scheduler: placement by :class:`~actors.scheduler.SchedulerActor`.

    The actor follows ``JobRequested`` and appends ``JobScheduled`` (data locality first,
    within the cores and memory of each location); job ends free the resources.
    """

    actor_class: ClassVar[type[Actor]] = SchedulerActor

    async def schedule(self, job: Job, targets: Sequence[Target], hardware_requirement: Hardware | None) -> JobAllocation:
        """Refused: a job is placed when its step appends ``JobRequested``."""
        raise _by_events("placing a job", self.actor_class, "JobRequested -> JobScheduled")

    async def notify_status(self, job_name: str, status: Status) -> None:
        """Nothing to do: the actor frees resources on ``JobCompleted``/``JobAbandoned``/``JobCancelled``."""

    async def get_allocation(self, job_name: str) -> JobAllocation | None:
        """Always ``None``: allocations are the ``JobScheduled`` events of ``sf.ev.<run>.alloc.<job>``."""
        return None

    async def close(self) -> None:
        """Nothing to release (the actor lives in its run's host)."""


class ActorDataManager(DataManager):
    """The ``default`` data manager: data movement by :class:`~actors.data_manager.DataManagerActor`.

    The actor stages the inputs of each ``JobScheduled`` job (``InputsStaged``) and registers
    the outputs of each ``JobCompleted`` job as PRIMARY copies (``DataLocationsRegistered``).
    """

    actor_class: ClassVar[type[Actor]] = DataManagerActor

    async def register_path(self, location: ExecutionLocation, path: str, relpath: str | None = None,
                            data_type: DataType = DataType.PRIMARY) -> DataLocation:
        """Refused: paths are registered by ``DataLocationsRegistered`` events."""
        raise _by_events("registering a path", self.actor_class, "JobCompleted -> DataLocationsRegistered")

    async def register_relation(self, src_location: DataLocation, dst_location: DataLocation) -> None:
        """Refused: see :meth:`register_path`."""
        raise _by_events("registering a relation", self.actor_class, "DataLocationsRegistered")

    async def get_data_locations(self, path: str, deployment: str | None = None, location_name: str | None = None,
                                 data_type: DataType | None = None) -> list[DataLocation]:
        """Refused: the data locations are a fold of ``DataLocationsRegistered`` in each run."""
        raise _by_events("tracking data locations", self.actor_class, "DataLocationsRegistered")

    async def get_source_location(self, path: str, dst_deployment: str) -> DataLocation | None:
        """Refused: see :meth:`get_data_locations`."""
        raise _by_events("choosing a source copy", self.actor_class, "JobScheduled -> InputsStaged")

    async def invalidate_location(self, location: ExecutionLocation, path: str) -> None:
        """Refused: see :meth:`get_data_locations`."""
        raise _by_events("invalidating a copy", self.actor_class, "DataLocationsRegistered")

    async def transfer_data(self, src_location: ExecutionLocation, src_path: str,
                            dst_locations: Sequence[ExecutionLocation], dst_path: str,
                            writable: bool = False) -> None:
        """Refused: inputs are staged when a job is scheduled."""
        raise _by_events("staging data", self.actor_class, "JobScheduled -> InputsStaged")

    async def close(self) -> None:
        """Nothing to release (the actor lives in its run's host)."""


class ActorsPlugin(StreamFlowPlugin):
    """Registers scheduler ``default``, data manager ``default`` and database ``default``."""

    def register(self) -> None:
        """Register the actor-backed implementations."""
        self.register_scheduler("default", ActorScheduler)
        self.register_data_manager("default", ActorDataManager)
        self.register_database("default", EventLogDatabase)
