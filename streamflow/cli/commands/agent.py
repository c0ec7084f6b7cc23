"""``streamflow agent``: the command's parser; the agent itself is :mod:`streamflow.cli.agent`.

Every ``streamflow`` command line builds the parsers of all commands: this module imports
nothing heavy (the agent's module imports the workers and the whole CWL stack, ~0.25 s).
"""

from __future__ import annotations

import argparse
import os

__all__ = ["register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``agent`` command."""
    from streamflow.cli.main import add_bus_options

    parser = subparsers.add_parser(
        "agent", help="host executor workers that run jobs of any run on the bus",
        description="Run job tasks from the bus until SIGTERM/SIGINT (drain), for `streamflow run --workers 0`.")
    parser.add_argument("--workdir", help="base directory of job working directories "
                        "(default: $TMPDIR/streamflow-jobs)")
    parser.add_argument("--no-shared-fs", action="store_true",
                        help="this machine shares no filesystem with the run: publish job outputs to the bus "
                             "(JetStream object store) and fetch missing inputs from it")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="jobs this agent runs at once, per deployment (default: the number of CPUs)")
    parser.add_argument("--deployment", action="append", dest="deployments", metavar="NAME",
                        help="a deployment whose tasks to run (repeatable; default: __LOCAL__)")
    parser.add_argument("--name", help="this agent's id in events (default: <host>/<pid>)")
    parser.add_argument("--drain-timeout", type=float, default=0.0, metavar="SECONDS",
                        help="on SIGTERM, cancel jobs still running after this long (default: 0, wait for them)")
    parser.add_argument("--quiet", action="store_true", help="only errors on stderr")
    parser.add_argument("--debug", action="store_true", help="debug logs on stderr")
    add_bus_options(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the agent until it is stopped; return the exit code."""
    from streamflow.cli.agent import run as run_agent

    return run_agent(args)
