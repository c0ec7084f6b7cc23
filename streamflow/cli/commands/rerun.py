"""``streamflow rerun RUN_ID``: replay a failed or cancelled run as a new, linked run.

The new run records ``rerun_of`` (its causation) in ``RunSubmitted``. Every job that
completed in the old run, whose inputs are unchanged and whose output files still exist,
is reused (``JobReused``), not run again; the failed steps and everything downstream run.
The old run's log is never rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rerun``."""
    from streamflow.cli.main import add_bus_options
    from streamflow.cli.runids import run_id_arg

    parser = subparsers.add_parser("rerun", help="replay a failed run, reusing the jobs that succeeded")
    parser.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    parser.add_argument("--run-id", dest="new_run_id", type=run_id_arg, help="the new run's id (default: generated)")
    parser.add_argument("--outdir", help="where outputs are delivered (default: the old run's)")
    parser.add_argument("--workers", type=int, help="jobs this process may run at once")
    parser.add_argument("--max-retries", type=int, default=0)
    parser.add_argument("--retry-delay", type=float, default=0.0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--debug", action="store_true", help="debug logs on stderr")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the new run and wait for it."""
    from actors.failure_manager import RetrySettings
    from streamflow.cli.engine import RunOptions, prepare_rerun, read_submitted, submit_and_run
    from streamflow.cli.main import bus_options
    from streamflow.errors import StreamFlowError

    bus = bus_options(args)
    try:
        submitted = asyncio.run(read_submitted(bus, args.run_id))
        prepared = prepare_rerun(submitted)
    except StreamFlowError as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2
    options = RunOptions(
        workflow=submitted.workflow, job=submitted.job, outdir=args.outdir or submitted.outdir,
        run_id=args.new_run_id, workers=args.workers, bus=bus, workdir=submitted.workdir or None,
        retry=RetrySettings(max_retries=max(0, args.max_retries), retry_delay=max(0.0, args.retry_delay)),
        rerun_of=args.run_id,
    )

    def _announce(run_id: str) -> None:
        if not args.quiet:
            print(f"streamflow: run {run_id} (rerun of {args.run_id})", file=sys.stderr)

    try:
        result = asyncio.run(submit_and_run(options, prepared, announce=_announce))
    except StreamFlowError as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2
    if result.status == "COMPLETED":
        print(json.dumps(result.outputs, indent=4, sort_keys=True))
        return 0
    print(f"streamflow: run {result.run_id} {result.status}: {result.error}", file=sys.stderr)
    return 1
