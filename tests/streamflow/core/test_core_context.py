"""Tests of StreamFlowContext: building managers from classes and closing them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streamflow.core.context import StreamFlowContext
from streamflow.core.data import DataManager
from streamflow.core.deployment import DeploymentManager
from streamflow.core.persistence import Database
from streamflow.core.recovery import CheckpointManager, FailureManager
from streamflow.core.scheduling import Scheduler


def _concrete(
    base: type[Any], name: str, events: list[str], fail: bool = False, delay: float = 0.0
) -> type[Any]:
    """Return a subclass of ``base`` whose abstract methods are no-ops and whose close() is recorded."""

    async def close(self: Any) -> None:
        events.append(f"{name}:start")
        await asyncio.sleep(delay)
        events.append(f"{name}:end")
        if fail:
            raise RuntimeError(f"{name} failed")

    def init(self: Any, context: StreamFlowContext, **kwargs: Any) -> None:
        base.__init__(self, context)
        self.kwargs = kwargs

    cls = type(name, (base,), {"__init__": init, "close": close})
    cls.__abstractmethods__ = frozenset()  # type: ignore[attr-defined]
    return cls


def _context(events: list[str], config: dict[str, Any] | None = None, **fail: bool) -> StreamFlowContext:
    return StreamFlowContext(
        config or {},
        checkpoint_manager_class=_concrete(
            CheckpointManager, "checkpoint", events, fail.get("checkpoint", False), 0.02
        ),
        database_class=_concrete(Database, "database", events, fail.get("database", False)),
        data_manager_class=_concrete(DataManager, "data", events, fail.get("data", False), 0.02),
        deployment_manager_class=_concrete(
            DeploymentManager, "deployment", events, fail.get("deployment", False), 0.02
        ),
        failure_manager_class=_concrete(FailureManager, "failure", events, fail.get("failure", False), 0.02),
        scheduler_class=_concrete(Scheduler, "scheduler", events, fail.get("scheduler", False), 0.02),
    )


def test_managers_receive_their_config_sections() -> None:
    """Each manager is built with the `config` of its section (scheduler: scheduling.scheduler)."""
    config = {
        "failureManager": {"type": "retry", "config": {"max_retries": 2}},
        "scheduling": {"scheduler": {"type": "default", "config": {"retry_delay": 3}}},
        "database": {"type": "default"},
    }
    context = _context([], config)
    assert context.failure_manager.kwargs == {"max_retries": 2}  # type: ignore[attr-defined]
    assert context.scheduler.kwargs == {"retry_delay": 3}  # type: ignore[attr-defined]
    assert context.database.kwargs == {}  # type: ignore[attr-defined]
    assert context.failure_manager.context is context


async def test_close_runs_managers_concurrently_then_database() -> None:
    """close() closes all managers concurrently, and the database only after all of them."""
    events: list[str] = []
    async with _context(events) as context:
        assert not context.closed
    assert context.closed
    starts = [e for e in events[:5]]
    assert all(e.endswith(":start") for e in starts)  # all five started before any ended
    assert events[-2:] == ["database:start", "database:end"]


async def test_close_is_idempotent_and_concurrent_safe() -> None:
    """Repeated and concurrent close() calls close each manager once."""
    events: list[str] = []
    context = _context(events)
    await asyncio.gather(context.close(), context.close())
    await context.close()
    assert events.count("database:end") == 1 and events.count("scheduler:end") == 1


async def test_close_reports_failures_and_still_closes_database() -> None:
    """A failing manager does not stop the others; the errors surface as an ExceptionGroup."""
    events: list[str] = []
    context = _context(events, data=True, database=True)
    with pytest.raises(ExceptionGroup) as info:
        await context.close()
    assert sorted(str(e) for e in info.value.exceptions) == ["data failed", "database failed"]
    assert "scheduler:end" in events and "database:end" in events
