"""A live view of a run on a terminal: one row per step with its jobs by state.

:func:`watch_progress` follows the run's events on the log and redraws a ``rich`` table
(waiting, running, done and failed jobs per step, plus the elapsed time) a few times a
second, until told to stop or the run ends. When the console is not a terminal it shows
nothing at all: logs and the output object stay clean for pipes and CI.

:class:`ProgressState` presents the run's one projection
(:class:`events.projections.RunSummary`, pure, no I/O), so the same events always give the
same picture, and the same one as ``streamflow status`` and ``report``.
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

from events.projections import TERMINAL, RunSummary
from events.schema import StepFailed, StepTerminated

if TYPE_CHECKING:
    from events.log import EventLog, Record

__all__ = ["JOB_STATES", "ProgressState", "StepProgress", "watch_progress"]

JOB_STATES = ("waiting", "running", "done", "failed")
_SHOWN = {"waiting": "waiting", "running": "running", "completed": "done", "failed": "failed"}


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
    """What the progress view shows: the run's one projection, grouped by step.

    Job state is folded by :class:`events.projections.RunSummary` (a reused job is done, a
    rolled-back one waits again); this class only presents it.

    Attributes:
        run_id: the run.
        summary: the run's projection.
    """

    run_id: str
    summary: RunSummary = field(init=False)
    _step_status: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.summary = RunSummary(run_id=self.run_id)

    @property
    def name(self) -> str:
        """The workflow name."""
        return self.summary.name

    @property
    def status(self) -> str:
        """The run's status (SUBMITTED until it starts)."""
        return "SUBMITTED" if self.summary.status == "UNKNOWN" else self.summary.status

    @property
    def finished(self) -> bool:
        """Whether the run has ended."""
        return self.status in TERMINAL

    @property
    def steps(self) -> dict[str, StepProgress]:
        """Step id -> progress, for the steps that have jobs."""
        steps: dict[str, StepProgress] = {}
        for info in self.summary.jobs.values():
            step = steps.get(info.step)
            if step is None:
                step = steps[info.step] = StepProgress(
                    info.step, self.summary.steps.get(info.step, info.step),
                    status=self._step_status.get(info.step, "RUNNING"))
            step.jobs[info.job] = _SHOWN[info.state]
        return steps

    def apply(self, record: Record) -> None:
        """Fold one event."""
        self.summary.apply(record)
        body = record.body
        if isinstance(body, StepTerminated | StepFailed) and record.agg_id:
            self._step_status[record.agg_id] = body.status if isinstance(body, StepTerminated) else "FAILED"

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since submission (until the end, once ended)."""
        if not self.summary.submitted_at:
            return 0.0
        ended = self.summary.ended_at if self.finished else None
        end = ended if ended is not None else (now if now is not None else time.time())
        return max(0.0, end - self.summary.submitted_at)

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
        steps = self.steps
        for step in steps.values():
            table.add_row(step.name, *(str(step.count(s)) for s in JOB_STATES), step.status.lower())
        totals = {state: sum(s.count(state) for s in steps.values()) for state in JOB_STATES}
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
