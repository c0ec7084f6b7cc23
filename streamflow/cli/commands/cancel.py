"""``streamflow cancel RUN_ID``: stop a live run cleanly; it stays resumable.

The run's supervisor (the process holding the run's lease) receives the request on
``sf.ctl.<run>.cancel``, records ``RunCancelled``, stops its jobs and hands their tasks
back: ``wf`` has one writer. When no process hosts the run (it crashed), this command
becomes that writer: it takes the run's lease (refused while a live process holds it),
writes its fence and records ``RunCancelled`` fenced, then gives the lease back. An
invalid or unknown run id is refused (exit 2) and nothing is written.
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
    from events.lease import acquire_lease, lease_key, write_fence
    from events.log import EventLog, run_subject
    from events.projections import RunSummary
    from events.schema import RunCancelled
    from streamflow.bus import open_bus
    from streamflow.cli.main import bus_options
    from streamflow.errors import LeaseError

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
        except Exception:  # no live supervisor answers: become it, under the run's lease
            pass
        try:
            lease = await acquire_lease(log_.js, lease_key(args.run_id, "supervisor"))
        except LeaseError as exc:
            print(f"streamflow: run {args.run_id} did not answer the cancel request: {exc}", file=sys.stderr)
            return 1
        try:
            fence = await write_fence(log_, args.run_id, "supervisor", lease)
            await log_.append(args.run_id, "wf", None, RunCancelled(reason=args.reason), producer="run",
                              key=f"final/{summary.resumed}", fence=fence)
        finally:
            await lease.release()
        print(f"streamflow: run {args.run_id} cancelled (no live process)", file=sys.stderr)
        return 0


def run(args: argparse.Namespace) -> int:
    """Cancel the run."""
    return asyncio.run(_cancel(args))
