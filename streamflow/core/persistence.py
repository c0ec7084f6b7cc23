"""Persistence: the :class:`Database` interface, mirroring StreamFlow's.

In this engine the default implementation is the JetStream event log: every ``add_*`` and
``update_*`` appends events, and every ``get_*`` reads a projection folded from them (see
``docs/`` and the ``events`` package). Other implementations (e.g. SQLite) can be plugged in
through the ``database`` extension point.

Entities are identified by integer ids (:data:`PersistentId`), and rows are read-only mappings
from column name to value (:data:`Row`). Entity types are stored as *registered names* (for
example ``"ExecuteStep"`` or a plugin name), never as Python import paths.
"""

from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from streamflow.core.context import SchemaEntity

if TYPE_CHECKING:
    from events.projections import RunSummary
    from streamflow.core.context import StreamFlowContext

__all__ = ["Database", "DependencyType", "PersistentId", "Row"]

PersistentId: TypeAlias = int
"""Identifier of a stored entity."""

Row: TypeAlias = Mapping[str, Any]
"""A stored entity: column (or field) name → value."""


class DependencyType(enum.IntEnum):
    """Direction of a step↔port dependency."""

    INPUT = 0  # the port is an input of the step
    OUTPUT = 1  # the port is an output of the step


class Database(SchemaEntity):
    """Stores workflows, steps, ports, tokens, executions, deployments and provenance.

    Every method is a coroutine. ``get_*`` methods raise ``KeyError`` for unknown ids.

    Args:
        context: the StreamFlow context.
    """

    def __init__(self, context: StreamFlowContext) -> None:
        self.context = context

    # --- add --------------------------------------------------------------------------------

    @abstractmethod
    async def add_dependency(
        self, step: PersistentId, port: PersistentId, type: DependencyType, name: str
    ) -> None:
        """Record that ``port`` is the input or output ``name`` of ``step``."""

    @abstractmethod
    async def add_deployment(
        self,
        name: str,
        type: str,
        config: Mapping[str, Any],
        external: bool,
        lazy: bool,
        scheduling_policy: str | None,
        workdir: str | None,
        wraps: Mapping[str, Any] | None,
    ) -> PersistentId:
        """Store a deployment configuration and return its id."""

    @abstractmethod
    async def add_execution(
        self, step_id: PersistentId, job_token_id: PersistentId, cmd: str
    ) -> PersistentId:
        """Store a job execution (one attempt of a command) and return its id."""

    @abstractmethod
    async def add_filter(self, name: str, type: str, config: Mapping[str, Any]) -> PersistentId:
        """Store a binding filter configuration and return its id."""

    @abstractmethod
    async def add_port(
        self, name: str, workflow_id: PersistentId, type: str, params: Mapping[str, Any]
    ) -> PersistentId:
        """Store a port of workflow ``workflow_id`` and return its id."""

    @abstractmethod
    async def add_provenance(self, inputs: Sequence[PersistentId], token: PersistentId) -> None:
        """Record that ``token`` was produced from the tokens ``inputs``."""

    @abstractmethod
    async def add_step(
        self, name: str, workflow_id: PersistentId, status: int, type: str, params: Mapping[str, Any]
    ) -> PersistentId:
        """Store a step of workflow ``workflow_id`` and return its id."""

    @abstractmethod
    async def add_target(
        self,
        deployment: PersistentId,
        type: str,
        params: Mapping[str, Any],
        locations: int = 1,
        service: str | None = None,
        workdir: str | None = None,
    ) -> PersistentId:
        """Store a binding target on deployment ``deployment`` and return its id."""

    @abstractmethod
    async def add_token(
        self, tag: str, type: str, value: Any, port: PersistentId | None = None, recoverable: bool = False
    ) -> PersistentId:
        """Store a token (optionally emitted on ``port``) and return its id."""

    @abstractmethod
    async def add_workflow(
        self, name: str, params: Mapping[str, Any], status: int, type: str
    ) -> PersistentId:
        """Store a workflow (one run of it) and return its id."""

    # --- get --------------------------------------------------------------------------------

    @abstractmethod
    async def get_dependees(self, token_id: PersistentId) -> list[Row]:
        """Return the provenance rows of the tokens ``token_id`` was produced from."""

    @abstractmethod
    async def get_dependers(self, token_id: PersistentId) -> list[Row]:
        """Return the provenance rows of the tokens produced from ``token_id``."""

    @abstractmethod
    async def get_deployment(self, deployment_id: PersistentId) -> Row:
        """Return a deployment."""

    @abstractmethod
    async def get_execution(self, execution_id: PersistentId) -> Row:
        """Return an execution."""

    @abstractmethod
    async def get_executions_by_step(self, step_id: PersistentId) -> list[Row]:
        """Return the executions of a step, oldest first."""

    @abstractmethod
    async def get_filter(self, filter_id: PersistentId) -> Row:
        """Return a binding filter."""

    @abstractmethod
    async def get_input_ports(self, step_id: PersistentId) -> list[Row]:
        """Return the input dependencies (port id and name) of a step."""

    @abstractmethod
    async def get_input_steps(self, port_id: PersistentId) -> list[Row]:
        """Return the steps that read from a port."""

    @abstractmethod
    async def get_output_ports(self, step_id: PersistentId) -> list[Row]:
        """Return the output dependencies (port id and name) of a step."""

    @abstractmethod
    async def get_output_steps(self, port_id: PersistentId) -> list[Row]:
        """Return the steps that write to a port."""

    @abstractmethod
    async def get_port(self, port_id: PersistentId) -> Row:
        """Return a port."""

    @abstractmethod
    async def get_port_from_token(self, token_id: PersistentId) -> Row:
        """Return the port a token was emitted on."""

    @abstractmethod
    async def get_port_tokens(self, port_id: PersistentId) -> list[PersistentId]:
        """Return the ids of the tokens of a port, in emission order."""

    @abstractmethod
    async def get_reports(self, workflow: str, last_only: bool = False) -> list[list[Row]]:
        """Return execution reports of the runs of ``workflow`` (one list per run)."""

    @abstractmethod
    async def get_step(self, step_id: PersistentId) -> Row:
        """Return a step."""

    @abstractmethod
    async def get_target(self, target_id: PersistentId) -> Row:
        """Return a target."""

    @abstractmethod
    async def get_token(self, token_id: PersistentId) -> Row:
        """Return a token."""

    @abstractmethod
    async def get_workflow(self, workflow_id: PersistentId) -> Row:
        """Return a workflow."""

    @abstractmethod
    async def get_workflow_ports(self, workflow_id: PersistentId) -> list[Row]:
        """Return the ports of a workflow."""

    @abstractmethod
    async def get_workflow_steps(self, workflow_id: PersistentId) -> list[Row]:
        """Return the steps of a workflow."""

    @abstractmethod
    async def get_workflows_by_name(self, workflow_name: str, last_only: bool = False) -> list[Row]:
        """Return the runs of the workflow ``workflow_name``, newest first."""

    @abstractmethod
    async def get_workflows_list(self, name: str | None) -> list[Row]:
        """Return a summary per workflow name, or one row per run of ``name`` if given."""

    # --- the read model of runs ---------------------------------------------------------------

    async def get_run_summary(self, run_id: str) -> RunSummary:
        """Return the read model of a run (status, steps, jobs and their attempts, transfers).

        Every view of a run (``streamflow status``, ``report``, ``prov``, metrics, progress)
        reads this one projection, :class:`events.projections.RunSummary`.

        Raises:
            RunNotFoundError: the run is unknown.
        """
        raise NotImplementedError(f"{type(self).__name__} does not serve run summaries")

    async def get_run_summaries(self) -> list[RunSummary]:
        """Return every run's lifecycle (status, name, times; no job detail), in submission order."""
        raise NotImplementedError(f"{type(self).__name__} does not serve run summaries")

    # --- update -----------------------------------------------------------------------------

    @abstractmethod
    async def update_deployment(
        self, deployment_id: PersistentId, updates: Mapping[str, Any]
    ) -> PersistentId:
        """Update fields of a deployment; return its id."""

    @abstractmethod
    async def update_execution(self, execution_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of an execution (status, end time, ...); return its id."""

    @abstractmethod
    async def update_filter(self, filter_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a binding filter; return its id."""

    @abstractmethod
    async def update_port(self, port_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a port; return its id."""

    @abstractmethod
    async def update_step(self, step_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a step (status, ...); return its id."""

    @abstractmethod
    async def update_target(self, target_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a target; return its id."""

    @abstractmethod
    async def update_workflow(self, workflow_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a workflow (status, start/end time, ...); return its id."""

    @abstractmethod
    async def close(self) -> None:
        """Flush and release resources. Idempotent."""
