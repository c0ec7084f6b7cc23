"""The StreamFlow context: the object that owns every manager of a run.

It also defines :class:`SchemaEntity`, the base of every extension point: a class that can
describe its configuration with a JSON Schema.
"""

from __future__ import annotations

import asyncio
from abc import ABC
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from streamflow.core.data import DataManager
    from streamflow.core.deployment import DeploymentManager
    from streamflow.core.persistence import Database
    from streamflow.core.recovery import CheckpointManager, FailureManager
    from streamflow.core.scheduling import Scheduler

__all__ = ["SchemaEntity", "StreamFlowContext"]


class SchemaEntity(ABC):  # noqa: B024 - a mixin: only get_schema, with a permissive default
    """An extension point whose ``config`` is described by a JSON Schema (draft 2020-12)."""

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the JSON Schema of the keyword arguments the class accepts as ``config``.

        The default accepts any object; implementations should override it. The loader of
        ``streamflow.yml`` validates each ``config`` block against it, naming file, line and key.

        Returns:
            A JSON Schema document (draft 2020-12) as a dict.
        """
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}


def _manager_config(config: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    section: Any = config
    for key in keys:
        section = section.get(key) if isinstance(section, Mapping) else None
    if isinstance(section, Mapping) and isinstance(section.get("config"), Mapping):
        return dict(section["config"])
    return {}


class StreamFlowContext:
    """Owns the managers of a run: built from classes, closed together.

    Each manager is built as ``cls(context=self, **config[<key>]["config"])``, with the keys
    ``checkpointManager``, ``database``, ``dataManager``, ``deploymentManager``,
    ``failureManager``, and ``scheduling.scheduler`` for the scheduler (as in StreamFlow). The
    classes are usually looked up by name in the plugin registry
    (:func:`streamflow.config.build_context`).

    Use it as an async context manager; leaving the block closes it::

        async with StreamFlowContext(config, ...) as context:
            ...

    Args:
        config: the configuration dictionary (a loaded ``streamflow.yml``).
        checkpoint_manager_class: the CheckpointManager implementation.
        database_class: the Database implementation.
        data_manager_class: the DataManager implementation.
        deployment_manager_class: the DeploymentManager implementation.
        failure_manager_class: the FailureManager implementation.
        scheduler_class: the Scheduler implementation.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        checkpoint_manager_class: type[CheckpointManager],
        database_class: type[Database],
        data_manager_class: type[DataManager],
        deployment_manager_class: type[DeploymentManager],
        failure_manager_class: type[FailureManager],
        scheduler_class: type[Scheduler],
    ) -> None:
        self.config: Mapping[str, Any] = config
        self.database: Database = database_class(context=self, **_manager_config(config, "database"))
        self.checkpoint_manager: CheckpointManager = checkpoint_manager_class(
            context=self, **_manager_config(config, "checkpointManager")
        )
        self.data_manager: DataManager = data_manager_class(
            context=self, **_manager_config(config, "dataManager")
        )
        self.deployment_manager: DeploymentManager = deployment_manager_class(
            context=self, **_manager_config(config, "deploymentManager")
        )
        self.failure_manager: FailureManager = failure_manager_class(
            context=self, **_manager_config(config, "failureManager")
        )
        self.scheduler: Scheduler = scheduler_class(
            context=self, **_manager_config(config, "scheduling", "scheduler")
        )
        self._close_task: asyncio.Task[None] | None = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has completed."""
        return self._close_task is not None and self._close_task.done()

    async def close(self) -> None:
        """Close every manager concurrently, then the database last. Idempotent.

        Concurrent and repeated calls wait for the same closing. Every manager is closed even if
        another one fails; the database is closed in any case.

        Raises:
            ExceptionGroup: with the errors raised by the managers' ``close()``.
        """
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        errors: list[Exception] = []
        try:
            results = await asyncio.gather(
                self.checkpoint_manager.close(),
                self.data_manager.close(),
                self.deployment_manager.close(),
                self.failure_manager.close(),
                self.scheduler.close(),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, Exception):
                    errors.append(result)
                elif isinstance(result, BaseException):
                    raise result
        finally:
            try:
                await self.database.close()
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise ExceptionGroup("errors while closing the StreamFlow context", errors)

    async def __aenter__(self) -> Self:
        """Return the context itself."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the context (see :meth:`close`)."""
        await self.close()
