"""The event log: event schemas, codec, the JetStream log API and projections.

This package is the leaf of the dependency graph: it imports only msgspec, nats-py and
:mod:`streamflow.errors`.
"""

from __future__ import annotations

from events.codec import decode, encode, event_id, event_type
from events.log import EVENTS_STREAM, TASKS_STREAM, AppendResult, EventLog, Record, run_subject
from events.projections import RunSummary
from events.schema import Envelope, Event, EventBody

__all__ = [
    "EVENTS_STREAM",
    "TASKS_STREAM",
    "AppendResult",
    "Envelope",
    "Event",
    "EventBody",
    "EventLog",
    "Record",
    "RunSummary",
    "decode",
    "encode",
    "event_id",
    "event_type",
    "run_subject",
]
