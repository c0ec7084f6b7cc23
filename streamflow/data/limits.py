"""How big a value may be to travel in events, and what happens to one that is bigger.

Workflow inputs and job outputs travel by value in events (``RunSubmitted``,
``JobCompleted``, ``TokenEmitted``...). An event is one NATS message, bounded by the event
stream's ``max_msg_size`` (4 MiB, :mod:`events.log`) and by the server's ``max_payload``
(8 MiB on the embedded server, 1 MiB by default on others), less room for the envelope.
Rather than a traceback, or a job result that can never be recorded (a run every
``resume`` would re-run and crash on):

* inputs too large are refused before anything is written (:func:`check_inputs`, exit 2);
* a job result too large becomes a ``JobFailed`` that is not retried, naming the output
  and the limit (:func:`fit_job_result`).

Files are not affected: a ``File`` travels as its path, never its content.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from events.codec import encode_body
from events.schema import JobCompleted, JobFailed, RunSubmitted
from streamflow.errors import InputValidationError

__all__ = ["ENVELOPE_ROOM", "EVENT_STREAM_MAX", "check_inputs", "event_limit", "fit_job_result"]

EVENT_STREAM_MAX = 4 * 1024 * 1024
"""The event stream's ``max_msg_size`` (set in :meth:`events.log.EventLog.setup`)."""

ENVELOPE_ROOM = 64 * 1024
"""Bytes kept for the envelope, the headers and the other fields of an event."""


def event_limit(max_payload: int | None) -> int:
    """The largest event body that can be appended on a bus whose ``max_payload`` is given."""
    bound = EVENT_STREAM_MAX if not max_payload or max_payload <= 0 else min(EVENT_STREAM_MAX, max_payload)
    return bound - ENVELOPE_ROOM


def _largest(values: Mapping[str, Any]) -> tuple[str, int]:
    sizes = [(name, len(msgspec.json.encode(value))) for name, value in values.items()]
    return max(sizes, key=lambda item: item[1]) if sizes else ("", 0)


def check_inputs(submitted: RunSubmitted, max_payload: int | None) -> None:
    """Refuse a run whose inputs cannot travel in its ``RunSubmitted`` event.

    Raises:
        InputValidationError: naming the largest input, its size and the limit.
    """
    limit = event_limit(max_payload)
    size = len(encode_body(submitted))
    if size <= limit:
        return
    name, biggest = _largest(submitted.inputs)
    raise InputValidationError(
        f"input {name!r} is {biggest} bytes: inputs travel in events, limited to {limit} bytes on this bus "
        f"(all inputs together: {size} bytes); pass a large value as a File instead")


def fit_job_result(body: JobCompleted | JobFailed, max_payload: int | None) -> JobCompleted | JobFailed:
    """``body``, or a ``JobFailed`` (not retryable) when a ``JobCompleted`` is too large to record."""
    if not isinstance(body, JobCompleted):
        return body
    limit = event_limit(max_payload)
    size = len(encode_body(body))
    if size <= limit:
        return body
    name, biggest = _largest(body.outputs)
    return JobFailed(
        error=f"output {name!r} of job {body.job} is {biggest} bytes: outputs travel in events, limited to "
              f"{limit} bytes on this bus (the whole result: {size} bytes); write a large value to a File instead",
        exit_code=body.exit_code, retryable=False, duration=body.duration, error_type="OutputTooLargeError",
        job=body.job, attempt=body.attempt, delivery=body.delivery)
