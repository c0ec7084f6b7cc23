"""``streamflow cancel RUN_ID``: stop a live run cleanly; it stays resumable.

The process hosting the run receives the request on ``sf.ctl.<run>.cancel``, records
``RunCancelled``, stops its jobs and hands their tasks back. When no process hosts the
run (it crashed), the cancellation is recorded directly. An invalid or unknown run id is
refused (exit 2) and nothing is written.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cancel``."""
    from streamflow.cli.main import add_bus_options
    from streamflow.cli.runids import run_id_arg

    parser = subparsers.add_parser("cancel", help="cancel a run (it stays resumable)")
    parser.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    parser.add_argument("--reason", default="cancelled by user")
    add_bus_options(parser)
    parser.set_defaults(func=run)


async def _cancel(args: argparse.Namespace) -> int:
    from events.log import EventLog, run_subject
    from events.projections import RunSummary
    from events.schema import RunCancelled
    from streamflow.bus import open_bus
    from streamflow.cli.main import bus_options

    async with open_bus(bus_options(args)) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        if not await log_.exists(args.run_id):  # nothing is written for a run that does not exist
            print(f"streamflow: no run {args.run_id!r} in the event log", file=sys.stderr)
            return 2
        summary = RunSummary(run_id=args.run_id)
        async for record in log_.read(args.run_id, subject_filter=run_subject(args.run_id, "wf")):
            summary.apply(record)
        if summary.status in ("COMPLETED", "FAILED", "CANCELLED"):
            print(f"streamflow: run {args.run_id} is already {summary.status}", file=sys.stderr)
            return 0
        try:
            await nc.request(f"sf.ctl.{args.run_id}.cancel", args.reason.encode(), timeout=5)
            print(f"streamflow: run {args.run_id} cancelled", file=sys.stderr)
            return 0
        except Exception:  # no live process hosts the run: record it ourselves
            await log_.append(args.run_id, "wf", None, RunCancelled(reason=args.reason), producer="cli",
                              key=f"cancelled/{summary.resumed}")
            print(f"streamflow: run {args.run_id} cancelled (no live process)", file=sys.stderr)
            return 0


def run(args: argparse.Namespace) -> int:
    """Cancel the run."""
    return asyncio.run(_cancel(args))
