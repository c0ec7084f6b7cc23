"""The ``streamflow`` and ``streamflow-cwl-runner`` command lines.

Exit codes: 0 success; 1 the workflow failed; 2 invalid input, definition or usage;
33 an unsupported requirement (the CWL runner convention).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
import structlog

from streamflow import __version__
from streamflow.bus import BusOptions
from streamflow.cli.runids import run_id_arg
from streamflow.errors import (
    BusError,
    RunNotFoundError,
    StreamFlowError,
    UnsupportedRequirementError,
    WorkflowDefinitionError,
)

if TYPE_CHECKING:
    from streamflow.cli.engine import Interrupt

__all__ = ["RunnerContext", "console_main", "cwl_runner_main", "main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_UNSUPPORTED = 33
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell expects of a writer whose reader left


def configure_logging(*, quiet: bool = False, debug: bool = False) -> None:
    """Configure structlog once: to stderr; JSON when stderr is not a terminal."""
    level = logging.DEBUG if debug else (logging.ERROR if quiet else logging.WARNING)
    renderer: Any = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _err(message: str) -> None:
    print(f"streamflow: {message}", file=sys.stderr)


def add_bus_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bus")
    group.add_argument("--nats", metavar="URLS", help="NATS server URLs, comma separated (default: "
                       "$STREAMFLOW_NATS_URL, else an embedded server)")
    group.add_argument("--nats-token", metavar="TOKEN", help="auth token (or $STREAMFLOW_NATS_TOKEN)")
    group.add_argument("--nats-user", metavar="USER")
    group.add_argument("--nats-password", metavar="PASSWORD")
    group.add_argument("--nats-creds", metavar="FILE", help="NATS .creds file")
    group.add_argument("--nats-nkey", metavar="FILE", help="NKey seed file")
    group.add_argument("--nats-tls-ca", metavar="FILE")
    group.add_argument("--nats-tls-cert", metavar="FILE")
    group.add_argument("--nats-tls-key", metavar="FILE")


def bus_options(args: argparse.Namespace) -> BusOptions:
    return BusOptions.from_env(
        servers=[u for u in (args.nats or "").split(",") if u] or None,
        token=args.nats_token, user=args.nats_user, password=args.nats_password,
        creds=args.nats_creds, nkey=args.nats_nkey, tls_ca=args.nats_tls_ca,
        tls_cert=args.nats_tls_cert, tls_key=args.nats_tls_key,
    )


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workflow", metavar="WORKFLOW", help="the CWL document (file[#process])")
    parser.add_argument("job", metavar="JOB", nargs="?", help="the job (inputs) document, YAML or JSON")
    parser.add_argument("--outdir", default=".", help="where output files are delivered (default: .)")
    parser.add_argument("--quiet", action="store_true", help="only errors on stderr")
    parser.add_argument("--debug", action="store_true", help="debug logs on stderr")
    parser.add_argument("--validate", action="store_true",
                        help="validate and translate only (the inputs too, when JOB is given); do not run")
    parser.add_argument("--print-dot", "--print-graph", dest="print_dot", action="store_true",
                        help="print the translated workflow graph in Graphviz DOT and exit; do not run")
    parser.add_argument("--workdir", help="base directory of job working directories (default: $TMPDIR/streamflow-jobs)")
    parser.add_argument("--max-retries", type=int, default=0, help="retries of a failed job (default: 0)")
    parser.add_argument("--retry-delay", type=float, default=0.0, help="seconds before the first retry")
    cwl = parser.add_argument_group("cwltool compatibility")
    cwl.add_argument("--no-container", action="store_true",
                     help="run tools with a DockerRequirement on the host, never in a container (recorded "
                          "with the run: a resume does the same)")
    cwl.add_argument("--tmpdir-prefix", metavar="PREFIX",
                     help="job directories under this prefix's directory (PREFIX ending in / is the "
                          "directory itself); like --workdir")
    cwl.add_argument("--tmp-outdir-prefix", metavar="PREFIX",
                     help="the same as --tmpdir-prefix (a job's output and temporary directories are "
                          "created together); wins over it")
    cwl.add_argument("--leave-tmpdir", action="store_true",
                     help="keep the job directories of a completed run (removed by default; a failed or "
                          "cancelled run keeps them for rerun/resume)")
    cwl.add_argument("--leave-outputs", action="store_true",
                     help="keep the job directories (intermediate outputs) too; final outputs are still "
                          "delivered to --outdir")
    cwl.add_argument("--cachedir", metavar="DIR",
                     help="keep job directories in DIR and reuse the completed jobs of earlier runs made "
                          "with the same DIR (same step, inputs and tool; outputs still present)")
    cwl.add_argument("--provenance", metavar="DIR",
                     help="write the run's Workflow Run RO-Crate into DIR (a path ending in .zip: a zip "
                          "file), as 'streamflow prov' does")
    cwl.add_argument("--parallel", action="store_true",
                     help="accepted for cwltool compatibility: independent jobs always run in parallel")


def build_parser() -> argparse.ArgumentParser:
    """The ``streamflow`` argument parser."""
    parser = argparse.ArgumentParser(prog="streamflow", description="Run CWL workflows on an event-sourced engine.")
    parser.add_argument("--version", action="version", version=f"StreamFlow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    run = sub.add_parser("run", help="run a CWL workflow")
    _add_run_arguments(run)
    run.add_argument("--run-id", type=run_id_arg, help="the run id (default: generated)")
    run.add_argument("--workers", type=int, help="jobs this process may run at once (0: none, leave them to agents)")
    run.add_argument("--metrics-port", type=int, metavar="PORT",
                     help="serve Prometheus metrics on 127.0.0.1:PORT while the run lasts")
    run.add_argument("--no-progress", action="store_true", help="no live progress display on a terminal")
    run.add_argument("--no-shared-fs", action="store_true",
                     help="agents do not share this machine's filesystem: publish input files to the bus")
    run.add_argument("--actors", metavar="GROUPS",
                     help="host only these actor groups here (steps, ports, scheduler, data-manager, "
                          "failure-manager, supervisor); the others run in `streamflow host` processes")
    add_bus_options(run)

    events = sub.add_parser("events", help="show a run's events in log order")
    events.add_argument("run_id", metavar="RUN_ID", nargs="?", type=run_id_arg)
    events.add_argument("--all", action="store_true", help="every run's events")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.add_argument("--follow", "-f", action="store_true",
                        help="keep printing new events; for a RUN_ID, until the run's final event")
    events.add_argument("--forever", action="store_true",
                        help="with --follow: keep following after the run ends (a resume, other runs with --all)")
    events.add_argument("--type", action="append", dest="types", metavar="T", help="only events of this type")
    events.add_argument("--step", help="only events of this step (id or name)")
    events.add_argument("--since", type=int, default=0, metavar="SEQ", help="only events after this run sequence")
    add_bus_options(events)

    lst = sub.add_parser("list", help="list runs")
    lst.add_argument("--json", action="store_true")
    add_bus_options(lst)

    status = sub.add_parser("status", help="show a run's status")
    status.add_argument("run_id", metavar="RUN_ID", type=run_id_arg)
    status.add_argument("--json", action="store_true")
    add_bus_options(status)

    ext = sub.add_parser("ext", help="list registered extensions")
    ext_sub = ext.add_subparsers(dest="ext_command", metavar="SUBCOMMAND")
    ext_sub.required = True
    ext_list = ext_sub.add_parser("list", help="list registered plugins' extensions")
    ext_list.add_argument("--type", "-t", dest="kind", help="only this extension point")
    ext_list.add_argument("--json", action="store_true")

    schema = sub.add_parser("schema", help="print JSON Schemas")
    schema.add_argument("what", choices=["events", "config"], nargs="?", default="events")

    sub.add_parser("version", help="print the version")

    from streamflow.cli.commands import discover

    for register in discover():
        register(sub)
    return parser


#: Set by :func:`console_main`: this process is the ``streamflow`` command, nothing else
#: runs in it, so the garbage collector may be tuned for it (see :func:`_settle_heap`).
_console = False


def _settle_heap() -> None:
    """End of start-up in the ``streamflow`` process: move what start-up allocated (modules,
    the loaded document, the graph: objects that live as long as the process) out of the
    collector's reach, and turn the collector back on.

    :func:`console_main` turns it off while the process imports its ~700 modules and loads
    the document: collections triggered by those allocations cost ~0.1 s of CPU and find
    next to nothing to free. Frozen, those objects are not scanned again by the run's own
    collections either. Does nothing in other processes (tests, the runner daemon).
    """
    if _console:
        gc.freeze()
        gc.enable()


def console_main() -> int:
    """Entry point of the ``streamflow`` console script: :func:`main` in a lean process.

    The collector is off during start-up (:func:`_settle_heap`), and once the command is
    over the process leaves with ``os._exit`` after flushing its output: the interpreter's
    own shutdown (freeing every module and object one by one) took 0.2-0.3 s of a one-step
    run. Nothing of StreamFlow's needs that shutdown: the run has stopped its bus, its
    workers and its jobs by then, and ``atexit`` is not used.
    """
    global _console
    _console = True
    gc.disable()
    try:
        code = main()
    except SystemExit:
        gc.enable()
        raise  # argparse's --help, --version and usage errors: the ordinary way out
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe: nothing more to say
        code = code or EXIT_FAILED
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``streamflow``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(quiet=getattr(args, "quiet", False), debug=getattr(args, "debug", False))
    from streamflow.cli.guards import terminate_like_interrupt

    terminate_like_interrupt()
    if args.command != "run":
        _settle_heap()  # a run settles once its document is loaded
    try:
        func = getattr(args, "func", None)
        if func is not None:
            return int(func(args))
        if args.command == "run":
            return _cmd_run(args, runner_style=False)
        if args.command == "events":
            return asyncio.run(_cmd_events(args))
        if args.command == "list":
            return asyncio.run(_cmd_list(args))
        if args.command == "status":
            return asyncio.run(_cmd_status(args))
        if args.command == "ext":
            return _cmd_ext(args)
        if args.command == "schema":
            return _cmd_schema(args)
        if args.command == "version":
            print(f"StreamFlow version {__version__}")
            return EXIT_OK
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:  # the reader went away (``streamflow events RUN | head``): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the final flush does not fail again
        os.close(devnull)
        return EXIT_BROKEN_PIPE
    except RunNotFoundError as exc:
        _err(str(exc))
        return EXIT_INVALID
    except (BusError, nats.errors.Error, nats.js.errors.Error) as exc:
        _err(f"bus error: {_bus_error_text(exc, args)}")
        return EXIT_FAILED
    parser.error(f"unknown command {args.command}")
    return EXIT_INVALID


def build_runner_parser() -> argparse.ArgumentParser:
    """The ``streamflow-cwl-runner`` argument parser."""
    parser = argparse.ArgumentParser(prog="streamflow-cwl-runner", description="StreamFlow as a CWL runner.")
    parser.add_argument("--version", action="version", version=f"streamflow-cwl-runner {__version__}")
    _add_run_arguments(parser)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help="jobs this process may run at once (ignored by the "
                        "runner daemon, whose pool runs every run's jobs)")
    add_bus_options(parser)
    return parser


@dataclass(frozen=True)
class RunnerContext:
    """A command line run by the runner daemon on behalf of a client.

    Attributes:
        cwd: the client's working directory (relative paths are resolved against it).
        interrupt: fired when the client goes away.
        tmpdir: the client's ``$TMPDIR`` (default base of job working directories).
        on_run: called with the run id once the run is recorded.
        pool: the daemon's private worker pool (a pseudo-deployment) that runs the jobs
            of ``__LOCAL__``.
        defer: takes the clean-up that can wait until the client has its answer (the
            removal of a completed run's job directories); None: done before answering.
    """

    cwd: str
    interrupt: Interrupt
    tmpdir: str | None = None
    on_run: Callable[[str], None] | None = None
    pool: str | None = None
    defer: Callable[[Callable[[], None]], None] | None = None


def cwl_runner_main(argv: Sequence[str] | None = None, *, runner: RunnerContext | None = None) -> int:
    """Run a ``streamflow-cwl-runner`` command line here (the cwl-runner convention).

    The console script is :func:`streamflow.cli.runner.main`, which forwards the command
    line to the warm runner daemon; the daemon (and the client, when no daemon can serve
    it) runs it through this function.
    """
    args = build_runner_parser().parse_args(argv)
    configure_logging(quiet=args.quiet, debug=args.debug)
    if runner is None:
        from streamflow.cli.guards import terminate_like_interrupt

        terminate_like_interrupt()
    try:
        return _cmd_run(args, runner_style=True, runner=runner)
    except KeyboardInterrupt:
        return _interrupted()


def _interrupted() -> int:
    """Exit code (and message) of a command stopped by Ctrl-C (130) or SIGTERM (143)."""
    from streamflow.cli.guards import EXIT_TERMINATED, terminated

    if terminated():
        _err("terminated")
        return EXIT_TERMINATED
    _err("interrupted")
    return 130


def _bus_error_text(exc: BaseException, args: argparse.Namespace) -> str:
    """A bus error's text, naming the full disk under ``$STREAMFLOW_HOME`` when it is the cause."""
    from streamflow.cli.guards import bus_error_message

    try:
        embedded = not bus_options(args).servers
    except AttributeError:  # a command without bus options
        embedded = not os.environ.get("STREAMFLOW_NATS_URL")
    return bus_error_message(exc, embedded=embedded)


def _resolve_paths(args: argparse.Namespace, cwd: str, tmpdir: str | None) -> None:
    """Resolve a daemon-run command line's paths against the client's directory."""

    def _join(path: str | None) -> str | None:
        if path is None or "://" in path:
            return path
        return os.path.join(cwd, os.path.expanduser(path))

    args.workflow = _join(args.workflow)
    args.job = _join(args.job)
    args.outdir = _join(args.outdir)
    for key in ("cachedir", "provenance"):
        if getattr(args, key, None):
            setattr(args, key, _join(getattr(args, key)))
    if args.workdir:
        args.workdir = _join(args.workdir)
    elif tmpdir:
        args.workdir = os.path.join(tmpdir, "streamflow-jobs")


_BUS_NOT_READY = "JetStream is not available on the bus"
"""How :meth:`events.log.EventLog.setup` reports a bus that went away while joining it."""


async def _redeliver_lost_cancellations(period: float = 1.0) -> None:
    """Cancel again the tasks whose cancellation was lost.

    On Python 3.11, ``asyncio.wait_for`` (used by nats-py's request, fetch and JetStream
    publish) returns the awaited result instead of raising when a cancellation arrives in
    the same loop iteration as that result (CPython gh-86296). A task stopped by the host's
    task group in the middle of such a call (an actor appending, the log reader, a worker
    fetching) then carries on and waits forever, and the run never returns although its
    final event is recorded. A task still marked as cancelling one period after the
    cancellation was requested lost it (or is still cleaning up): deliver it again.
    """
    pending: dict[asyncio.Task[Any], float] = {}
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    while True:
        await asyncio.sleep(period)
        now = loop.time()
        for task in asyncio.all_tasks():
            if task.done() or task is me:
                continue
            if not task.cancelling():
                pending.pop(task, None)
            elif now - pending.setdefault(task, now) >= period:
                pending.pop(task, None)
                task.cancel()
        for task in [t for t in pending if t.done()]:
            pending.pop(task, None)


async def _with_lost_cancellations_redelivered(main: Any) -> Any:
    watchdog = asyncio.create_task(_redeliver_lost_cancellations())
    try:
        return await main
    finally:
        watchdog.cancel()


def _cmd_run(args: argparse.Namespace, *, runner_style: bool, runner: RunnerContext | None = None) -> int:
    from actors.failure_manager import RetrySettings
    from streamflow.cli.engine import RunOptions, prepare, submit_and_run

    _cwltool_workdir(args)
    if runner is not None:
        _resolve_paths(args, runner.cwd, runner.tmpdir)
    config_run = None
    workflow, job = args.workflow, args.job
    try:
        from streamflow.cli.config_run import apply_bindings, is_streamflow_file, load_config_run

        if is_streamflow_file(workflow):
            config_run = load_config_run(workflow)
            workflow, job = config_run.workflow, job or config_run.job
        if (args.validate or args.print_dot) and job is None:
            from streamflow.cwl.runflags import check_document

            prepared = check_document(workflow)  # the document alone: no inputs to check
        else:
            prepared = prepare(workflow, job, cwd=runner.cwd if runner is not None else None)
        if args.no_container:
            from streamflow.cwl.translator import RUN_CONTAINER

            prepared.inputs[RUN_CONTAINER] = "none"  # recorded: resumes and agents do the same
        if config_run is not None:
            apply_bindings(prepared.graph, config_run)
        if args.no_container:
            from streamflow.workflow.graph import ExecuteStep

            for step in prepared.graph.steps.values():
                if isinstance(step, ExecuteStep):
                    step.container = "none"
    except UnsupportedRequirementError as exc:
        _err(f"unsupported requirement: {exc}")
        return EXIT_UNSUPPORTED
    except WorkflowDefinitionError as exc:
        _err(str(exc))
        return EXIT_INVALID
    except StreamFlowError as exc:
        _err(str(exc))
        return EXIT_INVALID
    except RecursionError:
        from streamflow.cli.guards import MAX_VALUE_DEPTH

        _err(f"the job's values are nested too deeply to be read (more than {MAX_VALUE_DEPTH} levels are refused)")
        return EXIT_INVALID
    problem = _check_up_front(args, prepared, workflow)
    if problem is not None:
        _err(problem)
        return EXIT_INVALID
    if args.print_dot:
        from streamflow.cwl.graphviz import to_dot

        print(to_dot(prepared.graph))
        return EXIT_OK
    if args.validate:
        print(json.dumps({"valid": True, "steps": len(prepared.graph.steps), "ports": len(prepared.graph.ports)}))
        return EXIT_OK
    from streamflow.cli.engine import parse_groups

    try:
        groups = parse_groups(getattr(args, "actors", None))
    except WorkflowDefinitionError as exc:
        _err(str(exc))
        return EXIT_INVALID
    retry = RetrySettings(max_retries=max(0, args.max_retries), retry_delay=max(0.0, args.retry_delay))
    if config_run is not None and not args.max_retries:
        retry = config_run.retry
    options = RunOptions(
        workflow=workflow, job=job, outdir=args.outdir, run_id=args.run_id, workers=args.workers,
        bus=bus_options(args), workdir=args.workdir, retry=retry,
        config=config_run.path if config_run else None,
        locations=config_run.locations if config_run else None, config_run=config_run,
        clean_remote=not (args.leave_tmpdir or args.leave_outputs or args.cachedir),
        progress=(not runner_style and not args.quiet and not getattr(args, "no_progress", False)
                  and sys.stderr.isatty()),
        metrics_port=getattr(args, "metrics_port", None),
        groups=groups,
        shared_fs=not getattr(args, "no_shared_fs", False),
        # In the runner daemon, the daemon's worker pool runs every run's jobs.
        interrupt=runner.interrupt if runner is not None else None,
    )
    fingerprints: dict[str, str] = {}
    if args.cachedir:
        from streamflow.cwl.runflags import cache_loader, step_fingerprints

        fingerprints = step_fingerprints(prepared.graph)
        options.reusable = cache_loader(args.cachedir, fingerprints)
    if runner is not None:
        options.workers = 0
        if runner.pool is not None:
            options.task_routes = {"__LOCAL__": runner.pool}
        if runner.interrupt.fired:
            _err("interrupted")
            return 130

    def _announce(run_id: str) -> None:
        if args.cachedir:
            from streamflow.cwl.runflags import record_cached_run

            record_cached_run(args.cachedir, run_id, fingerprints)
        if runner is not None and runner.on_run is not None:
            runner.on_run(run_id)
        if not args.quiet:
            print(f"streamflow: run {run_id}", file=sys.stderr)

    _settle_heap()
    attempts = 3
    for attempt in range(1, attempts + 1):
        try:
            result = asyncio.run(_with_lost_cancellations_redelivered(
                submit_and_run(options, prepared, announce=_announce)))
            break
        except WorkflowDefinitionError as exc:
            _err(str(exc))
            return EXIT_INVALID
        except ExceptionGroup as group:
            # An actor host gave up (a lease that could not be renewed, the bus gone for
            # too long): say what, without a traceback. The run stays resumable.
            leaves = _leaf_errors(group)
            reason = "; ".join(dict.fromkeys(str(e) for e in leaves)) or repr(group)
            _err(f"the run was stopped: {reason} (resume it with 'streamflow resume')")
            return EXIT_FAILED
        except BusError as exc:
            # The shared embedded server can be stopped by its last other client just as
            # this process joins it: the streams cannot be set up, nothing is recorded yet,
            # and a second try starts a fresh server.
            if attempt < attempts and str(exc).startswith(_BUS_NOT_READY):
                time.sleep(0.2 * attempt)
                continue
            _err(f"bus error: {_bus_error_text(exc, args)}")
            return EXIT_FAILED
    _after_run(args, result, options.workdir, defer=runner.defer if runner is not None else None)
    if result.status == "COMPLETED":
        from streamflow.cwl.utils import restore_big_numbers

        print(json.dumps(restore_big_numbers(result.outputs), indent=4, sort_keys=True))
        return EXIT_OK
    if result.error_type == "UnsupportedRequirementError":
        _err(f"unsupported requirement: {result.error}")
        return EXIT_UNSUPPORTED
    _err(f"run {result.run_id} {result.status}: {result.error}")
    return EXIT_FAILED


def _cwltool_workdir(args: argparse.Namespace) -> None:
    """The job directories' base chosen by cwltool's flags (``--cachedir`` first)."""
    prefix = args.cachedir or args.tmp_outdir_prefix or args.tmpdir_prefix
    if not prefix or (args.workdir and not args.cachedir):
        return
    if prefix == args.cachedir or prefix.endswith("/") or os.path.isdir(prefix):
        args.workdir = prefix
    else:  # cwltool makes PREFIX<random>: the directory is PREFIX's
        args.workdir = os.path.dirname(prefix) or "."


def _after_run(args: argparse.Namespace, result: Any, workdir: str | None,
               defer: Callable[[Callable[[], None]], None] | None = None) -> None:
    """``--provenance``, then the removal of a completed run's job directories (by ``defer``,
    when given: the runner daemon removes them once its client has the run's answer)."""
    from streamflow.cli.engine import _default_workdir
    from streamflow.cwl.runflags import remove_job_dirs, write_provenance

    if args.provenance:
        try:
            where = write_provenance(args, result.run_id, args.provenance)
        except (OSError, StreamFlowError) as exc:
            _err(f"--provenance {args.provenance}: cannot write the RO-Crate: {exc}")
        else:
            if not args.quiet:
                print(f"streamflow: provenance (RO-Crate) written to {where}", file=sys.stderr)
    if result.status == "COMPLETED" and not (args.leave_tmpdir or args.leave_outputs or args.cachedir):
        base, run_id = workdir or _default_workdir(), result.run_id
        if defer is not None:
            defer(lambda: remove_job_dirs(base, run_id))
        else:
            remove_job_dirs(base, run_id)


def _check_up_front(args: argparse.Namespace, prepared: Any, workflow: str) -> str | None:
    """What must be refused before anything is recorded (exit 2): an unusable ``--outdir``,
    job values nested too deeply or integers beyond what their declared type holds."""
    from streamflow.cli.guards import check_job_values, check_outdir, declared_types, has_big_numbers

    if not args.validate and not getattr(args, "print_dot", False):
        problem = check_outdir(args.outdir)
        if problem is not None:
            return problem
    declared: dict[str, Any] = {}
    if has_big_numbers(prepared.inputs):  # rare: only then are the declared types needed
        from streamflow.cwl.loader import load_document

        with contextlib.suppress(Exception):
            declared = declared_types(load_document(workflow).process)
    try:
        check_job_values(prepared.inputs, declared)
    except StreamFlowError as exc:
        return str(exc)
    return None


def _leaf_errors(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    leaves: list[BaseException] = []
    for exc in group.exceptions:
        leaves.extend(_leaf_errors(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return leaves


def _format_human(record: Any) -> str:
    from events.codec import event_type

    body = record.body
    fields = {k: v for k, v in __import__("msgspec").to_builtins(body).items() if k != "type"}
    text = json.dumps(fields, default=str)
    if len(text) > 160:
        text = text[:157] + "..."
    stamp = time.strftime("%H:%M:%S", time.localtime(record.time or record.envelope.occurred_at / 1e9))
    target = record.aggregate + (f".{record.agg_id}" if record.agg_id else "")
    return f"{record.seq or record.stream_seq:>6} {stamp} {record.envelope.run_id} {target:<18} {event_type(body):<22} {text}"


async def _cmd_events(args: argparse.Namespace) -> int:
    from events.log import EventLog
    from streamflow.bus import open_bus

    if not args.run_id and not args.all:
        _err("events: give a RUN_ID or --all")
        return EXIT_INVALID
    async with open_bus(bus_options(args)) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        from streamflow.runs.events import EventFilter, is_final, record_to_json, step_ids

        keep = EventFilter(types=set(args.types or []), since=args.since)
        if args.step and args.run_id:
            from events.schema import RunSubmitted

            first = await log_.first(f"sf.ev.{args.run_id}.wf")
            if first and isinstance(first[1].body, RunSubmitted):
                keep.steps = step_ids(first[1].body, args.step)
                if not keep.steps:
                    _err(f"events: run {args.run_id} has no step {args.step!r}")
                    return EXIT_INVALID
        until_end = bool(args.follow and not args.forever and not args.all)
        if args.follow and not args.all and not args.forever and not await log_.exists(args.run_id):
            raise RunNotFoundError(f"no run {args.run_id!r} in the event log (--forever waits for it)")
        source = log_.read_all(follow=args.follow) if args.all else log_.read(args.run_id, follow=args.follow)

        def _show(record: Any) -> None:
            if not keep.keeps(record):
                return
            if args.json:
                sys.stdout.write(json.dumps(record_to_json(record), default=str) + "\n")
            else:
                sys.stdout.write(_format_human(record) + "\n")
            sys.stdout.flush()

        ended_at, count = 0, 0
        async for record in source:
            count = record.seq or count + 1
            _show(record)
            if until_end and await is_final(log_, record):
                ended_at = record.stream_seq
                break
        if ended_at:
            # What was appended after the final event (undeployments...) up to now.
            import dataclasses

            async for record in log_.read(args.run_id, from_stream_seq=ended_at + 1):
                count += 1
                _show(dataclasses.replace(record, seq=count))
    return EXIT_OK


async def _summaries(log_: Any) -> list[Any]:
    """Every run's summary (lifecycle only), through the ``Database`` interface."""
    from streamflow.persistence.eventlog import EventLogDatabase

    database = EventLogDatabase(log=log_, rebuild_graphs=False)
    try:
        return await database.get_run_summaries()
    finally:
        await database.close()


async def _cmd_list(args: argparse.Namespace) -> int:
    from events.log import EventLog
    from streamflow.bus import open_bus

    async with open_bus(bus_options(args)) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        summaries = await _summaries(log_)
    if args.json:
        for s in summaries:
            print(json.dumps({"run_id": s.run_id, "name": s.name, "status": s.status,
                              "submitted_at": s.submitted_at, "ended_at": s.ended_at, "duration": s.duration}))
        return EXIT_OK
    print(f"{'RUN_ID':<16} {'NAME':<24} {'STATUS':<10} {'SUBMITTED':<20} DURATION")
    for s in summaries:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.submitted_at)) if s.submitted_at else "-"
        dur = f"{s.duration:.1f}s" if s.duration is not None else "-"
        print(f"{s.run_id:<16} {s.name[:24]:<24} {s.status:<10} {when:<20} {dur}")
    return EXIT_OK


async def _cmd_status(args: argparse.Namespace) -> int:
    from streamflow.cli.commands.report import read_summary

    summary = await read_summary(args, args.run_id)
    data = summary.to_dict()
    if args.json:
        print(json.dumps(data, default=str))
        return EXIT_OK
    print(f"run:      {summary.run_id} ({summary.name})")
    print(f"status:   {summary.status}")
    if summary.duration is not None:
        print(f"duration: {summary.duration:.2f}s")
    jobs = data["jobs"]
    print(f"steps:    {data['steps_terminated']}/{data['steps']} terminated")
    reused = f" ({jobs['reused']} reused)" if jobs["reused"] else ""
    print(f"jobs:     {jobs['completed']} completed{reused}, {jobs['failed']} failed attempts, "
          f"{jobs['retried']} retried, {jobs['abandoned']} abandoned of {jobs['requested']}")
    print(f"events:   {summary.events}")
    if summary.error:
        print(f"error:    {summary.error}")
    return EXIT_OK


def _cmd_ext(args: argparse.Namespace) -> int:
    from streamflow.plugins import Registry

    reg = Registry.default()
    rows = [r for r in reg.list() if not args.kind or r[0] == args.kind]
    if args.json:
        for kind, name, path in rows:
            print(json.dumps({"type": kind, "name": name, "class": path}))
        return EXIT_OK
    print(f"{'TYPE':<20} {'NAME':<16} CLASS")
    for kind, name, path in rows:
        print(f"{kind:<20} {name:<16} {path}")
    return EXIT_OK


def _cmd_schema(args: argparse.Namespace) -> int:
    if args.what == "events":
        from events.jsonschema import events_schema

        print(json.dumps(events_schema(), indent=2, sort_keys=True))
        return EXIT_OK
    from streamflow.config import get_schema

    print(json.dumps(get_schema(), indent=2, sort_keys=True))
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    os._exit(main())
