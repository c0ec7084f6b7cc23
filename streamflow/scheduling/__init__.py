"""Scheduling policies: implementations of :class:`streamflow.core.scheduling.Policy`."""

from __future__ import annotations

from streamflow.scheduling.policy import ACTIVE_STATUSES, DataLocalityPolicy

__all__ = ["ACTIVE_STATUSES", "DataLocalityPolicy"]
