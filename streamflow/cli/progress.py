"""A live view of a run on a terminal: one row per step with its jobs by state.

:func:`watch_progress` follows the run's events on the log and redraws a ``rich`` table
(waiting, running, done and failed jobs per step, plus the elapsed time) a few times a
second, until told to stop or the run ends. When the console is not a terminal it shows
nothing at all: logs and the output object stay clean for pipes and CI.

:class:`ProgressState` is the fold behind it (pure, no I/O), so the same events always
give the same picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from events.schema import (
    JobAbandoned,
    JobCancelled,
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
)

if TYPE_CHECKING:
    from events.log import EventLog, Record

__all__ = ["JOB_STATES", "ProgressState", "StepProgress", "watch_progress"]

JOB_STATES = ("waiting", "running", "done", "failed")
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


@dataclass
class StepProgress:
    """The jobs of one step, by state.

    Attributes:
        step: the step id.
        name: the step's name.
        jobs: job id -> state (one of :data:`JOB_STATES`).
        status: RUNNING until the step terminates, then its final status.
    """

    step: str
    name: str
    jobs: dict[str, str] = field(default_factory=dict)
    status: str = "RUNNING"

    def count(self, state: str) -> int:
        """How many of its jobs are in ``state``."""
        return sum(1 for s in self.jobs.values() if s == state)


@dataclass
class ProgressState:
    """What the progress view shows, folded from a run's events.

    Attributes:
        run_id: the run.
        name: the workflow name.
        status: the run's status.
        submitted_at: submission time (seconds since the epoch).
        ended_at: end time, once ended.
        step_names: step id -> name.
        steps: step id -> progress, for the steps that asked for jobs.
    """

    run_id: str
    name: str = ""
    status: str = "SUBMITTED"
    submitted_at: float | None = None
    ended_at: float | None = None
    step_names: dict[str, str] = field(default_factory=dict)
    steps: dict[str, StepProgress] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Whether the run has ended."""
        return self.status in TERMINAL

    def _set(self, job: str, state: str) -> None:
        step_id = job.split("-", 1)[0]
        step = self.steps.get(step_id)
        if step is None:
            step = self.steps[step_id] = StepProgress(step_id, self.step_names.get(step_id, step_id))
        step.jobs[job] = state

    def apply(self, record: Record) -> None:
        """Fold one event."""
        body = record.body
        when = record.time or record.envelope.occurred_at / 1e9
        if isinstance(body, RunSubmitted):
            self.name, self.submitted_at = body.name, when
            self.step_names = dict(body.steps)
            for step in self.steps.values():
                step.name = self.step_names.get(step.step, step.step)
        elif isinstance(body, RunStarted | RunResumed):
            self.status, self.ended_at = "RUNNING", None
        elif isinstance(body, RunCompleted | RunFailed | RunCancelled):
            self.status = {RunCompleted: "COMPLETED", RunFailed: "FAILED"}.get(type(body), "CANCELLED")
            self.ended_at = when
        elif isinstance(body, JobRequested):
            self.steps.setdefault(body.step, StepProgress(body.step, self.step_names.get(body.step, body.step)))
            self._set(body.job, "waiting")
        elif isinstance(body, JobStarted):
            self._set(body.job, "running")
        elif isinstance(body, JobCompleted):
            self._set(body.job, "done")
        elif isinstance(body, JobFailed | JobAbandoned | JobCancelled):
            self._set(body.job, "failed")
        elif isinstance(body, JobRetryScheduled):
            self._set(body.job, "waiting")
        elif isinstance(body, StepTerminated | StepFailed) and record.agg_id in self.steps:
            status = body.status if isinstance(body, StepTerminated) else "FAILED"
            self.steps[record.agg_id].status = status

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since submission (until the end, once ended)."""
        if self.submitted_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else (now if now is not None else time.time())
        return max(0.0, end - self.submitted_at)

    def totals(self) -> dict[str, int]:
        """Jobs by state over every step."""
        return {state: sum(s.count(state) for s in self.steps.values()) for state in JOB_STATES}

    def render(self, now: float | None = None) -> RenderableType:
        """The table and its header line."""
        table = Table(expand=False, show_edge=False, pad_edge=False)
        table.add_column("step")
        for state, style in zip(JOB_STATES, ("yellow", "cyan", "green", "red"), strict=True):
            table.add_column(state, justify="right", style=style)
        table.add_column("status")
        for step in self.steps.values():
            table.add_row(step.name, *(str(step.count(s)) for s in JOB_STATES), step.status.lower())
        totals = self.totals()
        table.add_row(Text("total", style="bold"), *(str(totals[s]) for s in JOB_STATES), "", end_section=True)
        header = Text.assemble(
            ("run ", "dim"), (self.run_id, "bold"), f" ({self.name}) ",
            (self.status.lower(), {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "red"}.get(self.status, "cyan")),
            ("  elapsed ", "dim"), f"{self.elapsed(now):.1f}s",
        )
        return Group(header, table)


async def watch_progress(log: EventLog, run_id: str, stop: asyncio.Event, *, console: Console | None = None,
                         refresh: float = 0.25) -> None:
    """Show the run's progress live until ``stop`` is set or the run ends.

    Nothing is shown (and the log is not read) when the console, stderr by default, is not
    a terminal.

    Args:
        log: the event log.
        run_id: the run to follow.
        stop: set it to end the display.
        console: where to draw (default: a console on stderr).
        refresh: seconds between redraws.
    """
    console = console or Console(stderr=True)
    if not console.is_terminal:
        return
    state = ProgressState(run_id=run_id)

    async def _follow() -> None:
        async for record in log.read(run_id, follow=True):
            state.apply(record)
            if state.finished:
                return

    async with asyncio.TaskGroup() as tg:
        reader = tg.create_task(_follow())
        with Live(state.render(), console=console, auto_refresh=False, transient=False) as live:
            while not stop.is_set() and not reader.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(refresh):
                        await stop.wait()
                live.update(state.render(), refresh=True)
            live.update(state.render(), refresh=True)
        reader.cancel()
