"""``streamflow report RUN_ID``: a timeline of a run's jobs, built from the event log alone.

Each job attempt becomes one row: the job is asked for (``JobRequested``: step and tag),
placed (``JobScheduled``: deployment and location), started (``JobStarted``: the
attempt's start, the server's timestamp of that record) and ended (``JobCompleted`` or
``JobFailed``); reused jobs (``JobReused``) are listed apart. The data is the run's one
projection (:class:`events.projections.RunSummary`), read through the ``Database``. The rows are written as JSON, CSV, or a single
self-contained HTML page: plotly.js and the timeline component that ``streamflow ui`` also
uses (``streamflow/ui/static/timeline.js``) inlined, drawing the same data that the page
embeds as JSON in ``<script type="application/json" id="sf-report-data">`` so that programs
(and tests) can read it without a browser.

:class:`Timeline` presents that projection; ``streamflow prov`` reuses it.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import html
import io
import json
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from events.log import EventLog, Record
from events.projections import Attempt, RunSummary
from events.projections import JobView as JobInfo

__all__ = ["Attempt", "JobInfo", "Timeline", "read_run", "read_summary", "register", "render", "run"]

CSV_FIELDS = (
    "job", "step", "step_name", "tag", "attempt", "delivery", "deployment", "location", "worker",
    "status", "requested_at", "scheduled_at", "start", "end", "duration", "exit_code", "error",
)


@dataclass
class Timeline:
    """The jobs of a run and their attempts: a view of the run's one projection.

    Job state is folded once, by :class:`events.projections.RunSummary`; this class only
    presents it as a report.

    Attributes:
        summary: the run's projection.
    """

    summary: RunSummary

    @classmethod
    def of(cls, run_id: str, records: list[Record]) -> Timeline:
        """Fold a run's records into a timeline."""
        timeline = cls(RunSummary(run_id=run_id))
        for record in records:
            timeline.apply(record)
        return timeline

    def apply(self, record: Record) -> None:
        """Fold one event."""
        self.summary.apply(record)

    @property
    def steps(self) -> dict[str, str]:
        """Step id -> name."""
        return self.summary.steps

    @property
    def jobs(self) -> dict[str, JobInfo]:
        """Job id -> what is known about it, in request order."""
        return self.summary.jobs

    @property
    def transfers(self) -> list[dict[str, Any]]:
        """The data the DataManager moved (``DataTransferred``), in log order."""
        return self.summary.transfers

    @property
    def attempts(self) -> list[Attempt]:
        """Every attempt, ordered by start time."""
        return self.summary.attempts

    def to_dict(self) -> dict[str, Any]:
        """The report's data (what ``--format json`` prints and the HTML page embeds)."""
        return self.summary.timeline()


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


async def read_summary(args: argparse.Namespace, run_id: str) -> RunSummary:
    """The run's projection, read through the ``Database`` interface over the bus named by
    the command's bus options.

    Raises:
        RunNotFoundError: the run has no events.
    """
    from streamflow.bus import open_bus
    from streamflow.cli.main import bus_options
    from streamflow.persistence.eventlog import EventLogDatabase

    async with open_bus(bus_options(args)) as nc:
        log = EventLog(nc)
        await log.setup()
        database = EventLogDatabase(log=log, rebuild_graphs=False)
        try:
            return await database.get_run_summary(run_id)
        finally:
            await database.close()


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


TIMELINE_JS = Path(__file__).resolve().parents[2] / "ui" / "static" / "timeline.js"
"""The timeline component shared with ``streamflow ui`` (the report inlines it)."""

_PAGE_STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; color: #1f2328;
       margin: 1.5rem auto; max-width: 1400px; padding: 0 1rem; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
.sf-meta { color: #59616b; margin: 0 0 1rem; } code { font-family: ui-monospace, Menlo, Consolas, monospace; }
table { border-collapse: collapse; font-size: .85rem; } th, td { border-bottom: 1px solid #e3e6ea;
       padding: .25rem .6rem; text-align: left; } th { background: #f4f5f7; }
label { font-size: .9rem; }
"""


def _inline_script(code: str) -> str:
    """``code`` as an inline ``<script>`` whose text cannot close the element early."""
    return "<script>" + code.replace("</script", "<\\/script") + "</script>\n"


def _to_html(data: dict[str, Any], *, group_by_step: bool) -> str:
    """One self-contained page: plotly.js and the shared timeline component inlined, the data
    embedded as JSON and drawn by ``SFTimeline.renderReport``."""
    from plotly.offline import get_plotlyjs  # type: ignore[import-untyped]

    name = html.escape(str(data["name"]))
    run_id = html.escape(str(data["run_id"]))
    duration = "" if data["duration"] is None else f", {data['duration']:.1f} s"
    meta = (f"<code>{run_id}</code> &middot; {html.escape(str(data['status']))}{duration} &middot; "
            f"{len(data['jobs'])} attempts, {len(data['reused'])} reused, {len(data['waiting'])} waiting"
            f" &middot; submitted {html.escape(_iso(data['submitted_at']))}")
    payload = json.dumps(data, sort_keys=True, default=str).replace("</", "<\\/")
    group = "step" if group_by_step else "location"
    parts = [
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
        f"<title>StreamFlow report: {name} ({run_id})</title>\n<style>{_PAGE_STYLE}</style>\n",
        _inline_script(get_plotlyjs()),
        _inline_script(TIMELINE_JS.read_text(encoding="utf-8")),
        "</head>\n<body>\n",
        f"<h1>StreamFlow run {name}</h1>\n<p class=\"sf-meta\">{meta}</p>\n",
        '<label>Lanes: <select id="sf-group-by"><option value="location">by location</option>'
        '<option value="step">by step</option></select></label>\n',
        '<div id="sf-timeline"></div>\n',
        _transfers_table(data["transfers"]) if data.get("transfers") else "",
        f'<script type="application/json" id="sf-report-data">{payload}</script>\n',
        f'<script>SFTimeline.renderReport("sf-report-data", "sf-timeline", "{group}");</script>\n',
        "</body>\n</html>\n",
    ]
    return "".join(parts)


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
    data = Timeline(asyncio.run(read_summary(args, args.run_id))).to_dict()
    text = render(data, args.format, group_by_step=args.group_by_step)
    output = args.output or (f"{args.run_id}-report.html" if args.format == "html" else "-")
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(output).write_text(text, encoding="utf-8")
        print(f"streamflow: report written to {output}", file=sys.stderr)
    return 0
