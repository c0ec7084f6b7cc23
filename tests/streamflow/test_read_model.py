"""Issue 14 (15): one read model of a run, reached through the Database interface.

A run with a reused job (``JobReused``) and a job completed, rolled back (its data was
lost) and completed again: ``status``, ``list``, ``report``, the metrics and the progress
view must all count two jobs completed, one of them reused, and agree with each other.
"""

from __future__ import annotations

import json
import secrets

from events.log import EventLog
from events.schema import (
    JobCompleted,
    JobRequested,
    JobReused,
    JobRollback,
    JobScheduled,
    JobStarted,
    RunCompleted,
    RunStarted,
    RunSubmitted,
    StepTerminated,
)
from streamflow.bus import BusOptions
from streamflow.cli.commands.report import Timeline
from streamflow.cli.metrics import MetricsExporter
from streamflow.cli.progress import ProgressState
from streamflow.persistence.eventlog import EventLogDatabase
from tests.conftest import run_cli


async def _write_run(log: EventLog) -> str:
    run = "rread" + secrets.token_hex(4)

    async def put(aggregate: str, agg_id: str | None, body: object, key: str = "") -> None:
        await log.append(run, aggregate, agg_id, body, producer="test", key=key)  # type: ignore[arg-type]

    await put("wf", None, RunSubmitted(name="wf", workflow="/nowhere/wf.cwl", steps={"s1": "/a", "s2": "/b"}))
    await put("wf", None, RunStarted())
    await put("step", "s1", JobRequested(job="s1-0", step="s1", tag="0"), "0")
    await put("alloc", "s1-0", JobScheduled(job="s1-0", deployment="__LOCAL__", location="localhost"), "1")
    await put("job", "s1-0", JobStarted(job="s1-0", attempt=1), "1")
    await put("job", "s1-0", JobCompleted(job="s1-0", attempt=1, outputs={"o": 1}), "1")
    # Its output was lost: the FailureManager re-runs it, and it completes again.
    await put("recovery", "s1-0", JobRollback(job="s1-0", attempt=2, for_job="s2-0"), "2")
    await put("job", "s1-0", JobStarted(job="s1-0", attempt=2), "2")
    await put("job", "s1-0", JobCompleted(job="s1-0", attempt=2, outputs={"o": 1}), "2")
    await put("step", "s2", JobReused(job="s2-0", tag="0", from_run="rolder", from_job="s2-0",
                                      outputs={"p": 2}), "0")
    await put("step", "s1", StepTerminated(fired=1))
    await put("step", "s2", StepTerminated(fired=1))
    await put("wf", None, RunCompleted(outputs={"p": 2}))
    return run


async def test_every_view_reads_one_projection_and_agrees(event_log: EventLog, bus_options: BusOptions,
                                                          sf_env: dict[str, str]) -> None:
    run = await _write_run(event_log)
    database = EventLogDatabase(log=event_log, rebuild_graphs=False)
    summary = await database.get_run_summary(run)
    assert summary.job_states() == {"waiting": 0, "running": 0, "completed": 2, "failed": 0}
    assert (summary.jobs_requested, summary.jobs_completed, summary.jobs_reused) == (2, 2, 1)
    assert (summary.jobs_started, summary.jobs_rolled_back) == (2, 1)
    assert summary.status == "COMPLETED"
    listed = {s.run_id: s for s in await database.get_run_summaries()}
    assert listed[run].status == "COMPLETED" and listed[run].name == "wf"

    records = [r async for r in event_log.read(run)]
    progress = ProgressState(run_id=run)
    exporter = MetricsExporter(event_log.nc, event_log)
    for record in records:
        progress.apply(record)
        exporter.apply(record)
    assert progress.totals() == {"waiting": 0, "running": 0, "done": 2, "failed": 0}
    assert exporter.snapshot()["jobs"] == {"completed": 2}

    report = Timeline(summary).to_dict()
    assert report["reused"] == ["s2-0"] and report["waiting"] == []
    assert [(a["job"], a["attempt"], a["status"]) for a in report["jobs"]] == [
        ("s1-0", 1, "COMPLETED"), ("s1-0", 2, "COMPLETED")]
    assert report["job_states"] == summary.job_states()

    # The commands print the same numbers.
    status = run_cli(["status", run, "--json"], sf_env)
    assert status.returncode == 0, status.stderr
    jobs = json.loads(status.stdout)["jobs"]
    assert (jobs["requested"], jobs["completed"], jobs["reused"], jobs["rolled_back"]) == (2, 2, 1, 1)
    printed = run_cli(["report", run, "--format", "json"], sf_env)
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["job_states"] == summary.job_states()
    assert json.loads(printed.stdout)["reused"] == ["s2-0"]
    missing = run_cli(["report", "rnosuchrunhere", "--format", "json"], sf_env)
    assert missing.returncode == 2 and "no run" in missing.stderr
    await database.close()
