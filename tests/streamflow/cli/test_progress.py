"""The live progress view of a run."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console

from events.log import EventLog
from streamflow.cli.progress import ProgressState, watch_progress
from tests.streamflow.cli.conftest import FinishedRun


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=120, color_system=None)


async def test_progress_shows_each_step_with_its_jobs_done(finished_run: FinishedRun, event_log: EventLog) -> None:
    """On a terminal, the view of a finished run shows its echo step with 3 jobs done, then returns."""
    console = _terminal()
    async with asyncio.timeout(20):
        await watch_progress(event_log, finished_run.run_id, asyncio.Event(), console=console)
    assert isinstance(console.file, io.StringIO)
    text = console.file.getvalue()
    last = text[text.rindex(f"run {finished_run.run_id}"):]
    assert "completed" in last and "elapsed" in last
    [row] = [line for line in last.splitlines() if line.lstrip().startswith("/echo")]
    assert row.replace("│", " ").split()[1:6] == ["0", "0", "3", "0", "completed"]


async def test_progress_fold_counts_jobs_by_state(finished_run: FinishedRun, event_log: EventLog) -> None:
    """The fold over the run's events gives 3 done jobs on one step and a finite elapsed time."""
    state = ProgressState(run_id=finished_run.run_id)
    async for record in event_log.read(finished_run.run_id):
        state.apply(record)
    assert state.finished and state.status == "COMPLETED"
    assert state.totals() == {"waiting": 0, "running": 0, "done": 3, "failed": 0}
    assert [s.name for s in state.steps.values()] == ["/echo"]
    assert 0 < state.elapsed() == state.elapsed(now=0.0)


async def test_progress_is_silent_when_not_a_terminal(finished_run: FinishedRun, event_log: EventLog) -> None:
    """When the console is not a terminal nothing is drawn and it returns at once."""
    console = Console(file=io.StringIO(), force_terminal=False)
    async with asyncio.timeout(2):
        await watch_progress(event_log, finished_run.run_id, asyncio.Event(), console=console)
    assert isinstance(console.file, io.StringIO)
    assert console.file.getvalue() == ""


async def test_progress_stops_when_asked(event_log: EventLog) -> None:
    """For a run that has not produced events yet, the view waits and ends when stop is set."""
    console = _terminal()
    stop = asyncio.Event()
    async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
        task = tg.create_task(watch_progress(event_log, "notstartedyet", stop, console=console, refresh=0.05))
        await asyncio.sleep(0.3)
        assert not task.done()
        stop.set()
    assert isinstance(console.file, io.StringIO)
    assert "notstartedyet" in console.file.getvalue()
