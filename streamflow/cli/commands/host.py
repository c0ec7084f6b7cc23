"""``streamflow host RUN_ID --actors GROUPS``: host some of a run's actors in this process.

Actors talk only over NATS, so the actors of one run can live in several processes on
several machines: e.g. ``streamflow run --actors steps,ports,supervisor`` on one host and
``streamflow host RUN --actors scheduler,data-manager,failure-manager`` on another. Each
hosted group is placed by a lease (JetStream KV ``sf_leases``, key ``<run>.<group>``), so
two live processes never host the same group (a ``run`` without ``--actors`` and every
``resume`` hold all of them); the group's fence (``LeaseTaken`` on
``sf.ev.<run>.fence.<group>``) makes the server refuse the appends of a previous holder.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``host``."""
    from streamflow.cli.groups import ACTOR_GROUPS
    from streamflow.cli.main import add_bus_options
    from streamflow.cli.runids import run_id_arg

    parser = subparsers.add_parser("host", help="host some actor groups of a run submitted elsewhere")
    parser.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    parser.add_argument("--actors", required=True, metavar="GROUPS",
                        help=f"comma-separated actor groups: {', '.join(ACTOR_GROUPS)}")
    parser.add_argument("--workers", type=int, default=0, help="jobs this process may run at once (default 0)")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the run to be submitted")
    parser.add_argument("--max-retries", type=int, default=None, help="default: the run's own policy")
    parser.add_argument("--retry-delay", type=float, default=None, help="default: the run's own policy")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--debug", action="store_true")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Host the groups until the run ends; exit 0 when it completed, 1 otherwise."""
    from actors.failure_manager import RetrySettings
    from streamflow.cli.engine import host_run, parse_groups
    from streamflow.cli.main import bus_options
    from streamflow.errors import StreamFlowError

    try:
        groups = parse_groups(args.actors) or set()
        retry = None
        if args.max_retries is not None or args.retry_delay is not None:
            retry = RetrySettings(max_retries=max(0, args.max_retries or 0),
                                  retry_delay=max(0.0, args.retry_delay or 0.0))
        result = asyncio.run(host_run(args.run_id, bus=bus_options(args), groups=groups,
                                      workers=max(0, args.workers), wait=args.wait, retry=retry))
    except StreamFlowError as exc:
        print(f"streamflow: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"streamflow: run {result.run_id} {result.status}", file=sys.stderr)
    return 0 if result.status == "COMPLETED" else 1
