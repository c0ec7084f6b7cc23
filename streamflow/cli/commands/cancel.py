"""``streamflow cancel RUN_ID``: stop a live run cleanly; it stays resumable.

The run's supervisor (the process holding the run's lease) receives the request on
``sf.ctl.<run>.cancel``, records ``RunCancelled``, stops its jobs and hands their tasks
back: ``wf`` has one writer. When no process hosts the run (it crashed), this command
becomes that writer: it takes the run's lease (refused while a live process holds it),
writes its fence and records ``RunCancelled`` fenced, then gives the lease back. An
invalid or unknown run id is refused (exit 2) and nothing is written. The logic is
:func:`streamflow.runs.control.cancel_run`, which the web UI calls too.
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
    from events.log import EventLog
    from streamflow.bus import open_bus
    from streamflow.cli.main import bus_options
    from streamflow.runs.control import cancel_run

    async with open_bus(bus_options(args)) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        result = await cancel_run(log_, args.run_id, args.reason)
    print(f"streamflow: {result.message}", file=sys.stderr)
    return result.code


def run(args: argparse.Namespace) -> int:
    """Cancel the run."""
    return asyncio.run(_cancel(args))
