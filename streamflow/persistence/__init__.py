"""Implementations of the :class:`~streamflow.core.persistence.Database` interface.

:class:`EventLogDatabase` is the default one (``database: {type: default}``): its read side
is a set of projections folded from the JetStream event log, its write side a JetStream KV
bucket for the entities the actors do not record (deployments, targets, filters).
"""

from __future__ import annotations

from streamflow.persistence.eventlog import (
    RECORDS_BUCKET,
    ActorOwnedEntityError,
    EventLogDatabase,
)

__all__ = ["RECORDS_BUCKET", "ActorOwnedEntityError", "EventLogDatabase"]
