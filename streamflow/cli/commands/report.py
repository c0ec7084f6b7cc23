"""``streamflow report RUN_ID``: a timeline of a run's jobs, built from the event log alone.

Each job attempt becomes one row: the job is asked for (``JobRequested``: step and tag),
placed (``JobScheduled``: deployment and location), started (``JobStarted``: the
attempt's start, the server's timestamp of that record) and ended (``JobCompleted``,
``JobFailed`` or ``JobCancelled``). The rows are written as JSON, CSV, or a single
self-contained HTML page: a plotly Gantt chart with plotly.js inlined, plus the same data
as JSON in ``<script type="application/json" id="sf-report-data">`` so that programs
(and tests) can read it without a browser.

:class:`Timeline` is the fold (pure, no I/O); ``streamflow prov`` reuses it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import html
import io
import json
import sys
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.log import EventLog, Record
from events.projections import RunSummary
from events.schema import (
    DataTransferred,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobRequested,
    JobScheduled,
    JobStarted,
    RunSubmitted,
)

__all__ = ["Attempt", "JobInfo", "Timeline", "read_run", "register", "render", "run"]

CSV_FIELDS = (
    "job", "step", "step_name", "tag", "attempt", "delivery", "deployment", "location", "worker",
    "status", "requested_at", "scheduled_at", "start", "end", "duration", "exit_code", "error",
)


@dataclass
class Attempt:
    """One attempt of a job, as a timeline row.

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
        status: RUNNING, COMPLETED, FAILED or CANCELLED.
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
class JobInfo:
    """What the log says about one job (all its attempts).

    Attributes:
        job: the job id.
        step: the step id.
        tag: the tag.
        inputs: the job's input object.
        requested_at: when it was asked for.
        deployment: its deployment, once scheduled.
        location: its location, once scheduled.
        scheduled_at: when it was scheduled.
        outputs: the output object of the completed attempt, if any.
        attempts: its attempts in log order.
    """

    job: str
    step: str
    tag: str
    inputs: dict[str, Any]
    requested_at: float | None
    deployment: str = ""
    location: str = ""
    scheduled_at: float | None = None
    outputs: dict[str, Any] | None = None
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def status(self) -> str:
        """WAITING (not started), or the status of the last attempt."""
        return self.attempts[-1].status if self.attempts else "WAITING"


def _when(record: Record) -> float:
    return record.time or record.envelope.occurred_at / 1e9


@dataclass
class Timeline:
    """The jobs of a run and their attempts, folded from its events in log order.

    Attributes:
        summary: the run-level fold (status, times, name).
        steps: step id -> name.
        jobs: job id -> what is known about it, in request order.
        transfers: the data the DataManager moved (``DataTransferred``), in log order.
    """

    summary: RunSummary
    steps: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, JobInfo] = field(default_factory=dict)
    transfers: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, run_id: str, records: list[Record]) -> Timeline:
        """Fold a run's records into a timeline."""
        timeline = cls(RunSummary(run_id=run_id))
        for record in records:
            timeline.apply(record)
        return timeline

    def _job(self, job_id: str, record: Record) -> JobInfo:
        info = self.jobs.get(job_id)
        if info is None:  # a job event without its request (a partial log): keep it anyway
            step = job_id.split("-", 1)[0]
            info = self.jobs[job_id] = JobInfo(job=job_id, step=step, tag="", inputs={}, requested_at=None)
        return info

    def apply(self, record: Record) -> None:
        """Fold one event."""
        self.summary.apply(record)
        body = record.body
        when = _when(record)
        if isinstance(body, RunSubmitted):
            self.steps = dict(body.steps)
        elif isinstance(body, JobRequested):
            info = self.jobs.get(body.job)
            if info is None:
                self.jobs[body.job] = JobInfo(job=body.job, step=body.step, tag=body.tag,
                                              inputs=dict(body.inputs), requested_at=when)
        elif isinstance(body, DataTransferred):
            self.transfers.append({
                "job": body.job, "path": body.path, "kind": body.kind, "bytes": body.bytes,
                "checksum": body.checksum, "seconds": body.seconds, "at": when,
                "source": f"{body.src_deployment}/{body.src_location}",
                "destination": f"{body.deployment}/{body.location}", "dst_path": body.dst_path})
        elif isinstance(body, JobScheduled):
            info = self._job(body.job, record)
            info.deployment, info.location, info.scheduled_at = body.deployment, body.location, when
        elif isinstance(body, JobStarted):
            info = self._job(body.job, record)
            info.attempts.append(Attempt(
                job=body.job, step=info.step, step_name=self.steps.get(info.step, info.step), tag=info.tag,
                attempt=body.attempt, delivery=body.delivery, deployment=info.deployment,
                location=info.location, worker=body.worker, status="RUNNING",
                requested_at=info.requested_at, scheduled_at=info.scheduled_at, start=when,
            ))
        elif isinstance(body, JobCompleted | JobFailed | JobCancelled):
            info = self._job(body.job, record)
            attempt = self._attempt(info, body.attempt, getattr(body, "delivery", None), when)
            attempt.end = when
            attempt.duration = max(0.0, when - attempt.start)
            if isinstance(body, JobCompleted):
                attempt.status, attempt.exit_code = "COMPLETED", body.exit_code
                info.outputs = dict(body.outputs)
            elif isinstance(body, JobFailed):
                attempt.status, attempt.exit_code, attempt.error = "FAILED", body.exit_code, body.error
            else:
                attempt.status = "CANCELLED"

    def _attempt(self, info: JobInfo, number: int, delivery: int | None, when: float) -> Attempt:
        for attempt in reversed(info.attempts):
            if attempt.attempt == number and (delivery is None or attempt.delivery == delivery):
                return attempt
        # An end without a start (e.g. a job that failed before its attempt started).
        attempt = Attempt(
            job=info.job, step=info.step, step_name=self.steps.get(info.step, info.step), tag=info.tag,
            attempt=number, delivery=delivery or 1, deployment=info.deployment, location=info.location,
            worker="", status="RUNNING", requested_at=info.requested_at, scheduled_at=info.scheduled_at,
            start=when,
        )
        info.attempts.append(attempt)
        return attempt

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt, ordered by start time."""
        rows = [a for info in self.jobs.values() for a in info.attempts]
        return sorted(rows, key=lambda a: (a.start, a.job, a.attempt, a.delivery))

    def to_dict(self) -> dict[str, Any]:
        """The report's data (what ``--format json`` prints and the HTML page embeds)."""
        s = self.summary
        return {
            "run_id": s.run_id,
            "name": s.name,
            "workflow": s.workflow,
            "status": s.status,
            "submitted_at": s.submitted_at or None,
            "ended_at": s.ended_at,
            "duration": s.duration,
            "steps": self.steps,
            "jobs": [asdict(a) for a in self.attempts],
            "waiting": sorted(j.job for j in self.jobs.values() if not j.attempts),
            "transfers": list(self.transfers),
            "bytes_transferred": sum(int(t["bytes"]) for t in self.transfers),
        }


async def read_run(args: argparse.Namespace, run_id: str) -> list[Record]:
    """Read every event of ``run_id`` from the bus named by the command's bus options.

    Raises:
        RunNotFoundError: the run has no events.
    """
    from streamflow.bus import open_bus
    from streamflow.cli.main import bus_options

    async with open_bus(bus_options(args)) as nc:
        log = EventLog(nc)
        await log.setup()
        return [record async for record in log.read(run_id)]


def _iso(value: float | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")


def _to_csv(data: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in data["jobs"]:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return out.getvalue()


def _to_html(data: dict[str, Any], *, group_by_step: bool) -> str:
    import plotly.graph_objects as go  # type: ignore[import-untyped]

    fig = go.Figure()
    rows = data["jobs"]
    end_of_run = data["ended_at"] or max((r["end"] or r["start"] for r in rows), default=0.0)
    locations = sorted({f"{r['deployment']}/{r['location']}" for r in rows})
    for location in locations:
        mine = [r for r in rows if f"{r['deployment']}/{r['location']}" == location]
        ys = [r["step_name"] if group_by_step else f"{r['step_name']} [{r['tag']}] #{r['attempt']}"
              for r in mine]
        fig.add_trace(go.Bar(
            name=location,
            orientation="h",
            y=ys,
            base=[_iso(r["start"]) for r in mine],
            x=[max(1.0, ((r["end"] or end_of_run) - r["start"]) * 1000.0) for r in mine],
            customdata=[[r["job"], r["status"], r["duration"], r["worker"]] for r in mine],
            hovertemplate=("job %{customdata[0]}<br>%{customdata[1]} in %{customdata[2]:.3f}s"
                           "<br>worker %{customdata[3]}<extra>%{fullData.name}</extra>"),
        ))
    fig.update_layout(
        title=f"StreamFlow run {data['run_id']} ({data['name']}): {data['status']}",
        barmode="overlay",
        xaxis={"type": "date", "title": "time (UTC)"},
        yaxis={"autorange": "reversed", "title": "step" if group_by_step else "job"},
        legend={"title": {"text": "location"}},
        height=max(400, 28 * len({*(r["step_name"] for r in rows)} if group_by_step else rows) + 200),
    )
    page: str = fig.to_html(full_html=True, include_plotlyjs=True)
    if data.get("transfers"):
        page = page.replace("</body>", _transfers_table(data["transfers"]) + "</body>", 1)
    payload = json.dumps(data, sort_keys=True, default=str).replace("</", "<\\/")
    tag = f'<script type="application/json" id="sf-report-data">{payload}</script>\n'
    return page.replace("</body>", tag + "</body>", 1) if "</body>" in page else page + tag


def _transfers_table(transfers: list[dict[str, Any]]) -> str:
    cells = ("job", "path", "source", "destination", "bytes", "seconds")
    head = "".join(f"<th>{name}</th>" for name in cells)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(t[name]))}</td>" for name in cells) + "</tr>"
                   for t in transfers)
    total = sum(int(t["bytes"]) for t in transfers)
    return (f'<h2>Data transfers ({len(transfers)}, {total} bytes)</h2>\n'
            f'<table id="sf-transfers"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>\n')


def render(data: dict[str, Any], fmt: str, *, group_by_step: bool = False) -> str:
    """Render the report's data as ``html``, ``json`` or ``csv`` text."""
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    if fmt == "csv":
        return _to_csv(data)
    return _to_html(data, group_by_step=group_by_step)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``streamflow report``."""
    from streamflow.cli.main import add_bus_options
    from streamflow.cli.runids import run_id_arg

    parser = subparsers.add_parser("report", help="a timeline (Gantt chart) of a run's jobs")
    parser.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    parser.add_argument("--format", choices=["html", "json", "csv"], default="html",
                        help="output format (default: html)")
    parser.add_argument("--output", "-o", metavar="FILE",
                        help="where to write it; '-' is stdout (default: RUN_ID-report.html for html, "
                             "stdout otherwise)")
    parser.add_argument("--group-by-step", action="store_true", help="one timeline row per step, not per job")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the report and write it."""
    records = asyncio.run(read_run(args, args.run_id))
    data = Timeline.of(args.run_id, records).to_dict()
    text = render(data, args.format, group_by_step=args.group_by_step)
    output = args.output or (f"{args.run_id}-report.html" if args.format == "html" else "-")
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"streamflow: report written to {output}", file=sys.stderr)
    return 0
