"""Checkpoint managers: ``dummy`` (no copies) and ``default`` (copies data to a local directory)."""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import TYPE_CHECKING, Any

from streamflow.core.deployment import LOCAL_DEPLOYMENT, ExecutionLocation
from streamflow.core.recovery import CheckpointManager

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.core.data import DataLocation

__all__ = ["DefaultCheckpointManager", "DummyCheckpointManager"]


class DummyCheckpointManager(CheckpointManager):
    """Takes no checkpoints."""

    async def register(self, data_location: DataLocation) -> None:
        """Do nothing."""

    async def close(self) -> None:
        """Nothing to release."""


class DefaultCheckpointManager(CheckpointManager):
    """Copies every registered non-local data location into a local checkpoint directory.

    Copies go through the context's DataManager (``transfer_data`` to ``__LOCAL__``), so the copy
    is registered and can serve as a source if the remote copy is lost. Data that already lives
    on this machine is not copied.

    Args:
        context: the StreamFlow context.
        checkpoint_dir: where to keep the copies; relative paths are resolved against the
            directory of ``streamflow.yml``. Defaults to ``<tmp>/streamflow/checkpoint/<uuid>``.
    """

    def __init__(self, context: StreamFlowContext, checkpoint_dir: str | None = None) -> None:
        super().__init__(context)
        base = str(context.config.get("config_dir") or os.getcwd())
        self.checkpoint_dir = (
            os.path.join(base, checkpoint_dir)
            if checkpoint_dir
            else os.path.join(
                os.path.realpath(tempfile.gettempdir()), "streamflow", "checkpoint", uuid.uuid4().hex
            )
        )
        self.checkpoints: dict[tuple[str, str, str], str] = {}

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of ``checkpointManager.config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"checkpoint_dir": {"type": "string", "description": "Where to keep the copies"}},
            "additionalProperties": False,
        }

    async def register(self, data_location: DataLocation) -> None:
        """Copy ``data_location`` into the checkpoint directory, unless it is already local."""
        if data_location.deployment == LOCAL_DEPLOYMENT:
            return
        key = (data_location.deployment, data_location.name, data_location.path)
        if key in self.checkpoints:
            return
        relpath = data_location.relpath.lstrip(os.sep) or os.path.basename(data_location.path)
        dst = os.path.join(self.checkpoint_dir, uuid.uuid4().hex, relpath)
        await self.context.data_manager.transfer_data(
            src_location=data_location.location,
            src_path=data_location.path,
            dst_locations=[ExecutionLocation(name="localhost", deployment=LOCAL_DEPLOYMENT, local=True)],
            dst_path=dst,
        )
        self.checkpoints[key] = dst

    async def close(self) -> None:
        """Nothing to release; copies are kept for later runs."""
