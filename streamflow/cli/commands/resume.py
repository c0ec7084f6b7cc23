"""``streamflow resume RUN_ID``: continue a run whose processes died, or that was cancelled.

The run's actors are hosted again here; they replay the log and carry on. A job whose
completion is recorded never runs again; a job that was in flight runs again in a fresh
directory, and only the attempt recorded as completed is used. Output and exit codes are
those of ``streamflow run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from streamflow.errors import ConfigError, LeaseError

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``resume``."""
    from streamflow.cli.main import add_bus_options
    from streamflow.cli.runids import run_id_arg

    parser = subparsers.add_parser("resume", help="continue a crashed or cancelled run")
    parser.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    parser.add_argument("--workers", type=int, help="jobs this process may run at once (0: leave them to agents)")
    parser.add_argument("--max-retries", type=int, default=None,
                        help="retries of a failed job (default: the run's own policy, as submitted)")
    parser.add_argument("--retry-delay", type=float, default=None,
                        help="seconds before the first retry (default: the run's own)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--debug", action="store_true", help="debug logs on stderr")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Resume the run; print its outputs like ``streamflow run``."""
    from actors.failure_manager import RetrySettings
    from streamflow.cli.engine import resume_run
    from streamflow.cli.main import bus_options

    def _announce(run_id: str) -> None:
        if not args.quiet:
            print(f"streamflow: resuming run {run_id}", file=sys.stderr)

    retry = None
    if args.max_retries is not None or args.retry_delay is not None:
        retry = RetrySettings(max_retries=max(0, args.max_retries or 0), retry_delay=max(0.0, args.retry_delay or 0.0))
    try:
        result = asyncio.run(resume_run(args.run_id, bus=bus_options(args), workers=args.workers, retry=retry,
                                        announce=_announce))
    except (LeaseError, ConfigError) as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2
    if result.status == "COMPLETED":
        print(json.dumps(result.outputs, indent=4, sort_keys=True))
        return 0
    print(f"streamflow: run {result.run_id} {result.status}: {result.error}", file=sys.stderr)
    return 1
