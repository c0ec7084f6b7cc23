"""Read models folded from the event log (pure functions of the events).

:class:`RunSummary` is what ``streamflow status`` and ``streamflow list`` show. It is a
fold: ``summary.apply(record)`` for each record in log order, with no I/O, so the same
events always give the same summary (golden logs in ``tests/data`` pin that).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from events.log import Record
from events.schema import (
    JobAbandoned,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobRetryScheduled,
    JobStarted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
    RunSubmitted,
    StepFailed,
    StepTerminated,
    TokenEmitted,
)

__all__ = ["RunSummary", "summarize"]


@dataclass
class RunSummary:
    """The state of a run as the log tells it.

    Attributes:
        run_id: the run.
        name: the workflow name.
        workflow: the workflow document.
        status: SUBMITTED, RUNNING, COMPLETED, FAILED or CANCELLED.
        submitted_at: time of submission (seconds since the epoch).
        ended_at: time of the final event, if any.
        steps: step id -> name.
        steps_terminated: ids of the steps that terminated.
        jobs_requested: jobs asked for.
        jobs_started: attempts started.
        jobs_completed: jobs completed.
        jobs_failed: attempts failed.
        jobs_retried: retries scheduled.
        jobs_abandoned: jobs given up on.
        tokens: tokens emitted.
        error: the failure, if any.
        failed_step: the failing step's name, if any.
        outputs: the output object, once completed.
        events: how many events were folded.
        last_seq: the last stream sequence folded.
        resumed: how many times the run was resumed.
    """

    run_id: str
    name: str = ""
    workflow: str = ""
    status: str = "UNKNOWN"
    submitted_at: float = 0.0
    ended_at: float | None = None
    steps: dict[str, str] = field(default_factory=dict)
    steps_terminated: set[str] = field(default_factory=set)
    jobs_requested: int = 0
    jobs_started: int = 0
    jobs_completed: int = 0
    jobs_failed: int = 0
    jobs_retried: int = 0
    jobs_abandoned: int = 0
    tokens: int = 0
    error: str | None = None
    failed_step: str | None = None
    outputs: dict[str, Any] | None = None
    events: int = 0
    last_seq: int = 0
    resumed: int = 0
    rerun_of: str | None = None

    def apply(self, record: Record) -> None:
        """Fold one event."""
        body = record.body
        self.events += 1
        self.last_seq = record.stream_seq
        when = record.time or record.envelope.occurred_at / 1e9
        if isinstance(body, RunSubmitted):
            self.name = body.name
            self.workflow = body.workflow
            self.steps = dict(body.steps)
            self.status = "SUBMITTED"
            self.submitted_at = when
            self.rerun_of = body.rerun_of
        elif isinstance(body, RunStarted):
            self.status = "RUNNING"
        elif isinstance(body, RunResumed):
            self.status = "RUNNING"
            self.resumed += 1
            self.ended_at = None
        elif isinstance(body, RunCompleted):
            self.status = "COMPLETED"
            self.outputs = body.outputs
            self.ended_at = when
        elif isinstance(body, RunFailed):
            self.status = "FAILED"
            self.error = body.error
            self.failed_step = body.step
            self.ended_at = when
        elif isinstance(body, RunCancelled):
            self.status = "CANCELLED"
            self.error = body.reason or None
            self.ended_at = when
        elif isinstance(body, StepTerminated):
            self.steps_terminated.add(record.agg_id or "")
        elif isinstance(body, StepFailed):
            self.error = self.error or body.error
        elif isinstance(body, JobRequested):
            self.jobs_requested += 1
        elif isinstance(body, JobStarted):
            self.jobs_started += 1
        elif isinstance(body, JobCompleted):
            self.jobs_completed += 1
        elif isinstance(body, JobFailed):
            self.jobs_failed += 1
        elif isinstance(body, JobRetryScheduled):
            self.jobs_retried += 1
        elif isinstance(body, JobAbandoned):
            self.jobs_abandoned += 1
        elif isinstance(body, TokenEmitted):
            self.tokens += 1

    @property
    def duration(self) -> float | None:
        """Seconds from submission to the end (None while running)."""
        if self.ended_at is None or not self.submitted_at:
            return None
        return max(0.0, self.ended_at - self.submitted_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "workflow": self.workflow,
            "status": self.status,
            "submitted_at": self.submitted_at,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "steps": len(self.steps),
            "steps_terminated": len(self.steps_terminated),
            "jobs": {
                "requested": self.jobs_requested,
                "started": self.jobs_started,
                "completed": self.jobs_completed,
                "failed": self.jobs_failed,
                "retried": self.jobs_retried,
                "abandoned": self.jobs_abandoned,
            },
            "tokens": self.tokens,
            "events": self.events,
            "error": self.error,
            "failed_step": self.failed_step,
            "resumed": self.resumed,
            "rerun_of": self.rerun_of,
        }


def summarize(run_id: str, records: list[Record]) -> RunSummary:
    """Fold a list of records into a summary."""
    summary = RunSummary(run_id=run_id)
    for record in records:
        summary.apply(record)
    return summary
