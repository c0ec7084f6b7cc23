"""Built-in failure and checkpoint managers."""

from __future__ import annotations

from streamflow.recovery.checkpoint import DefaultCheckpointManager, DummyCheckpointManager
from streamflow.recovery.failure import DummyFailureManager, RetryFailureManager

__all__ = ["DefaultCheckpointManager", "DummyCheckpointManager", "DummyFailureManager", "RetryFailureManager"]
