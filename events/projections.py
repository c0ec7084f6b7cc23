"""The read model of a run: one projection folded from the event log (pure, no I/O).

:class:`RunSummary` is the only fold of job state: ``streamflow status``, ``list``,
``report``, ``prov``, the Prometheus metrics and the live progress view all read it (through
:class:`~streamflow.core.persistence.Database`, implemented over the log by
``EventLogDatabase``), so they cannot disagree. It is a fold: ``summary.apply(record)`` for
each record in log order, so the same events always give the same view (golden logs in
``tests/data`` pin that).

Each job has one state (:data:`JOB_STATES`), moved by its events:

=====================  =================================================================
``JobRequested``       waiting
``JobStarted``         running (one :class:`Attempt` per start)
``JobCompleted``       completed (its outputs)
``JobReused``          completed, reused from an earlier run (no attempt)
``JobFailed``          failed (the attempt); ``JobRetryScheduled`` makes it waiting again
``JobAbandoned``       failed for good
``JobRollback``        waiting again: a completed job re-run because its data was lost
=====================  =================================================================

Counts are of jobs by their current state, so a job completed, rolled back and completed
again counts once; attempts are counted separately.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from events.log import Record
from events.schema import (
    DataTransferred,
    JobAbandoned,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobRetryScheduled,
    JobReused,
    JobRollback,
    JobScheduled,
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

__all__ = ["JOB_STATES", "RUN_STATUSES", "TERMINAL", "Attempt", "JobView", "RunSummary", "summarize"]

JOB_STATES = ("waiting", "running", "completed", "failed")
"""The states of a job (a reused job is ``completed``)."""

RUN_STATUSES = ("SUBMITTED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def _when(record: Record) -> float:
    return record.time or record.envelope.occurred_at / 1e9


@dataclass
class Attempt:
    """One attempt of a job (a report's timeline row).

    Attributes:
        job: the job id.
        step: the step id.
        step_name: the step's name in the workflow.
        tag: the job's tag.
        attempt: the attempt number.
        delivery: the work-queue delivery that ran it.
        deployment: where the Scheduler placed the job.
        location: the location within the deployment.
        worker: the worker that ran it.
        status: RUNNING, COMPLETED or FAILED.
        requested_at: when the job was asked for (seconds since the epoch).
        scheduled_at: when it was placed.
        start: when the attempt started.
        end: when it ended (None while running).
        duration: ``end - start`` in seconds (None while running).
        exit_code: the command's exit code, if known.
        error: the failure, if any.
    """

    job: str
    step: str
    step_name: str
    tag: str
    attempt: int
    delivery: int
    deployment: str
    location: str
    worker: str
    status: str
    requested_at: float | None
    scheduled_at: float | None
    start: float
    end: float | None = None
    duration: float | None = None
    exit_code: int | None = None
    error: str | None = None


@dataclass
class JobView:
    """What the log says about one job.

    Attributes:
        job: the job id.
        step: the step id.
        tag: the tag.
        inputs: the job's input object.
        requested_at: when it was asked for.
        state: one of :data:`JOB_STATES`.
        deployment: its deployment, once scheduled.
        location: its location, once scheduled.
        scheduled_at: when it was scheduled.
        outputs: the outputs of the completed attempt (or of the reused job), if any.
        attempts: its attempts in log order.
        reused_from: ``<run>/<job>`` whose result was reused, if any.
        retries: retries scheduled.
        rollbacks: times it was re-run because data it produced was lost.
        abandoned: whether the FailureManager gave up on it.
    """

    job: str
    step: str
    tag: str
    inputs: dict[str, Any]
    requested_at: float | None
    state: str = "waiting"
    deployment: str = ""
    location: str = ""
    scheduled_at: float | None = None
    outputs: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)
    reused_from: str | None = None
    retries: int = 0
    rollbacks: int = 0
    abandoned: bool = False

    @property
    def status(self) -> str:
        """WAITING (not started), REUSED, or the status of the last attempt."""
        if self.reused_from is not None:
            return "REUSED"
        return self.attempts[-1].status if self.attempts else "WAITING"


@dataclass
class RunSummary:
    """The state of a run as the log tells it.

    Attributes:
        run_id: the run.
        name: the workflow name.
        workflow: the workflow document.
        status: SUBMITTED, RUNNING, COMPLETED, FAILED or CANCELLED.
        submitted_at: time of submission (seconds since the epoch).
        started_at: time of the first RunStarted, if any.
        ended_at: time of the final event, if any.
        steps: step id -> name.
        steps_terminated: ids of the steps that terminated.
        jobs: job id -> its view, in request order.
        transfers: the data the DataManager moved (``DataTransferred``), in log order.
        tokens: tokens emitted.
        error: the failure, if any.
        failed_step: the failing step's name, if any.
        outputs: the output object, once completed.
        events: how many events were folded.
        last_seq: the last stream sequence folded.
        resumed: how many times the run was resumed.
        rerun_of: the run this one replays, if any.
    """

    run_id: str
    name: str = ""
    workflow: str = ""
    status: str = "UNKNOWN"
    submitted_at: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None
    steps: dict[str, str] = field(default_factory=dict)
    steps_terminated: set[str] = field(default_factory=set)
    jobs: dict[str, JobView] = field(default_factory=dict)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    tokens: int = 0
    error: str | None = None
    failed_step: str | None = None
    outputs: dict[str, Any] | None = None
    events: int = 0
    last_seq: int = 0
    resumed: int = 0
    rerun_of: str | None = None
    attempts_started: int = 0
    attempts_failed: int = 0

    def step_label(self, step: str) -> str:
        """A step's name for people: a lone tool's step (the root, ``/``) goes by the run's name."""
        name = self.steps.get(step, step)
        return self.name if name in ("/", "") and self.name else name

    # --- the fold ------------------------------------------------------------------------

    def apply(self, record: Record) -> None:
        """Fold one event."""
        body = record.body
        self.events += 1
        self.last_seq = record.stream_seq
        when = _when(record)
        if isinstance(body, RunSubmitted):
            self.name, self.workflow, self.steps = body.name, body.workflow, dict(body.steps)
            self.status, self.submitted_at, self.rerun_of = "SUBMITTED", when, body.rerun_of
        elif isinstance(body, RunStarted | RunResumed):
            self.status, self.ended_at = "RUNNING", None
            self.started_at = self.started_at or when
            if isinstance(body, RunResumed):
                self.resumed += 1
        elif isinstance(body, RunCompleted):
            self.status, self.outputs, self.ended_at = "COMPLETED", body.outputs, when
        elif isinstance(body, RunFailed):
            self.status, self.error, self.failed_step, self.ended_at = "FAILED", body.error, body.step, when
        elif isinstance(body, RunCancelled):
            self.status, self.error, self.ended_at = "CANCELLED", body.reason or None, when
        elif isinstance(body, StepTerminated):
            self.steps_terminated.add(record.agg_id or "")
        elif isinstance(body, StepFailed):
            self.error = self.error or body.error
        elif isinstance(body, TokenEmitted):
            self.tokens += 1
        elif isinstance(body, DataTransferred):
            self.transfers.append({
                "job": body.job, "path": body.path, "kind": body.kind, "bytes": body.bytes,
                "checksum": body.checksum, "seconds": body.seconds, "at": when,
                "source": f"{body.src_deployment}/{body.src_location}",
                "destination": f"{body.deployment}/{body.location}", "dst_path": body.dst_path})
        else:
            self._job_event(record, body, when)

    def _job_event(self, record: Record, body: Any, when: float) -> None:
        if isinstance(body, JobRequested):
            if body.job not in self.jobs:
                self.jobs[body.job] = JobView(job=body.job, step=body.step, tag=body.tag,
                                              inputs=dict(body.inputs), requested_at=when)
        elif isinstance(body, JobReused):
            info = self.jobs.get(body.job) or JobView(
                job=body.job, step=record.agg_id or body.job.split("-", 1)[0], tag=body.tag,
                inputs=dict(body.inputs), requested_at=when)
            self.jobs[body.job] = info
            info.state, info.outputs = "completed", dict(body.outputs)
            info.reused_from = f"{body.from_run}/{body.from_job}"
        elif isinstance(body, JobScheduled):
            info = self._job(body.job)
            info.deployment, info.location, info.scheduled_at = body.deployment, body.location, when
        elif isinstance(body, JobStarted):
            info = self._job(body.job)
            info.state = "running"
            self.attempts_started += 1
            info.attempts.append(Attempt(
                job=body.job, step=info.step, step_name=self.step_label(info.step), tag=info.tag,
                attempt=body.attempt, delivery=body.delivery, deployment=info.deployment,
                location=info.location, worker=body.worker, status="RUNNING",
                requested_at=info.requested_at, scheduled_at=info.scheduled_at, start=when))
        elif isinstance(body, JobCompleted | JobFailed):
            info = self._job(body.job)
            attempt = self._attempt(info, body.attempt, body.delivery, when)
            attempt.end, attempt.duration = when, max(0.0, when - attempt.start)
            if isinstance(body, JobCompleted):
                attempt.status, attempt.exit_code = "COMPLETED", body.exit_code
                info.state, info.outputs = "completed", dict(body.outputs)
            else:
                attempt.status, attempt.exit_code, attempt.error = "FAILED", body.exit_code, body.error
                self.attempts_failed += 1
                if info.state != "completed":  # a late failure of a superseded delivery changes nothing
                    info.state = "failed"
        elif isinstance(body, JobRetryScheduled):
            info = self._job(body.job)
            info.retries += 1
            info.state = "waiting"
        elif isinstance(body, JobRollback):
            info = self._job(body.job)
            info.rollbacks += 1
            info.state = "waiting"
        elif isinstance(body, JobAbandoned):
            info = self._job(body.job)
            info.abandoned, info.state = True, "failed"

    def _job(self, job_id: str) -> JobView:
        info = self.jobs.get(job_id)
        if info is None:  # a job event without its request (a partial log): keep it anyway
            info = self.jobs[job_id] = JobView(job=job_id, step=job_id.split("-", 1)[0], tag="", inputs={},
                                               requested_at=None)
        return info

    def _attempt(self, info: JobView, number: int, delivery: int | None, when: float) -> Attempt:
        for attempt in reversed(info.attempts):
            if attempt.attempt == number and (delivery is None or attempt.delivery == delivery):
                return attempt
        # An end without a start (e.g. a job that failed before its attempt started).
        attempt = Attempt(
            job=info.job, step=info.step, step_name=self.step_label(info.step), tag=info.tag,
            attempt=number, delivery=delivery or 1, deployment=info.deployment, location=info.location,
            worker="", status="RUNNING", requested_at=info.requested_at, scheduled_at=info.scheduled_at,
            start=when)
        info.attempts.append(attempt)
        return attempt

    # --- reading -------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """Whether the run has ended (until a resume)."""
        return self.status in TERMINAL

    def job_states(self) -> dict[str, int]:
        """Jobs by state (every state of :data:`JOB_STATES`, zeros included)."""
        counts = dict.fromkeys(JOB_STATES, 0)
        for info in self.jobs.values():
            counts[info.state] += 1
        return counts

    @property
    def jobs_requested(self) -> int:
        """Jobs of the run (requested or reused)."""
        return len(self.jobs)

    @property
    def jobs_started(self) -> int:
        """Attempts started."""
        return self.attempts_started

    @property
    def jobs_completed(self) -> int:
        """Jobs completed now (reused ones included; a rolled-back job counts once)."""
        return sum(1 for info in self.jobs.values() if info.state == "completed")

    @property
    def jobs_reused(self) -> int:
        """Jobs whose result was reused from an earlier run."""
        return sum(1 for info in self.jobs.values() if info.reused_from is not None)

    @property
    def jobs_failed(self) -> int:
        """Attempts failed."""
        return self.attempts_failed

    @property
    def jobs_retried(self) -> int:
        """Retries scheduled."""
        return sum(info.retries for info in self.jobs.values())

    @property
    def jobs_rolled_back(self) -> int:
        """Re-runs of completed jobs whose data was lost."""
        return sum(info.rollbacks for info in self.jobs.values())

    @property
    def jobs_abandoned(self) -> int:
        """Jobs given up on."""
        return sum(1 for info in self.jobs.values() if info.abandoned)

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt, ordered by start time."""
        rows = [a for info in self.jobs.values() for a in info.attempts]
        return sorted(rows, key=lambda a: (a.start, a.job, a.attempt, a.delivery))

    @property
    def duration(self) -> float | None:
        """Seconds from submission to the end (None while running)."""
        if self.ended_at is None or not self.submitted_at:
            return None
        return max(0.0, self.ended_at - self.submitted_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly view (what ``streamflow status --json`` prints)."""
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
                "reused": self.jobs_reused,
                "failed": self.jobs_failed,
                "retried": self.jobs_retried,
                "rolled_back": self.jobs_rolled_back,
                "abandoned": self.jobs_abandoned,
            },
            "tokens": self.tokens,
            "events": self.events,
            "error": self.error,
            "failed_step": self.failed_step,
            "resumed": self.resumed,
            "rerun_of": self.rerun_of,
        }

    def timeline(self) -> dict[str, Any]:
        """The report's data: the run, its attempts, waiting and reused jobs, transfers."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "workflow": self.workflow,
            "status": self.status,
            "submitted_at": self.submitted_at or None,
            "ended_at": self.ended_at,
            "duration": self.duration,
            "steps": self.steps,
            "jobs": [asdict(a) for a in self.attempts],
            "waiting": sorted(j.job for j in self.jobs.values() if not j.attempts and j.reused_from is None),
            "reused": sorted(j.job for j in self.jobs.values() if j.reused_from is not None),
            "job_states": self.job_states(),
            "transfers": list(self.transfers),
            "bytes_transferred": sum(int(t["bytes"]) for t in self.transfers),
        }


def summarize(run_id: str, records: list[Record]) -> RunSummary:
    """Fold a list of records into a summary."""
    summary = RunSummary(run_id=run_id)
    for record in records:
        summary.apply(record)
    return summary
