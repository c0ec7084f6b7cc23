"""The composition root of a run: wires the bus, the log, the actors and the workers.

``submit_and_run`` is the one code path behind ``streamflow run`` and
``streamflow-cwl-runner``: load and validate the document and the inputs, translate the
workflow into a graph, record ``RunSubmitted``, host every actor of the run plus the
local executor workers, and wait for the run's final event.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import secrets
import signal
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from actors._runtime import ActorHost, RunContext
from actors.data_manager import DataManagerActor
from actors.deployment import DeploymentActor
from actors.failure_manager import FailureManagerActor, RetrySettings
from actors.port import PortActor
from actors.scheduler import LocationCapacity, SchedulerActor, local_capacity
from actors.step import make_step_actor
from actors.supervisor import RunSupervisor, RunWatcher
from actors.worker import Worker
from events.agents import ANNOUNCE_EVERY, agents_bucket, list_agents
from events.lease import Lease, acquire_lease, lease_key, write_fence
from events.log import EventLog, Fence, run_subject, valid_id
from events.projections import RunSummary
from events.schema import (
    JobCompleted,
    JobRequested,
    JobReused,
    LocationInfo,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
    RunSubmitted,
)
from streamflow import __version__
from streamflow.bus import BusOptions, open_bus
from streamflow.cli.config_run import ConfigRun
from streamflow.cli.groups import ACTOR_GROUPS, parse_groups
from streamflow.core.deployment import BindingFilter
from streamflow.core.scheduling import Policy
from streamflow.data.manager import DefaultDataManager
from streamflow.deployment.manager import DefaultDeploymentManager
from streamflow.errors import ConcurrencyError, RunNotFoundError, WorkflowDefinitionError
from streamflow.workflow.graph import WorkflowGraph

__all__ = [
    "ACTOR_GROUPS",
    "Interrupt",
    "PreparedRun",
    "ReusableJob",
    "RunOptions",
    "RunResult",
    "execute_run",
    "hold_groups",
    "host_run",
    "load_graph",
    "new_run_id",
    "parse_groups",
    "prepare",
    "prepare_rerun",
    "read_submitted",
    "resume_run",
    "reuse_index",
    "submit_and_run",
]

log = structlog.get_logger("streamflow.engine")


def new_run_id() -> str:
    """A fresh, subject-safe run id."""
    return "r" + secrets.token_hex(6)


class Interrupt:
    """Stops a run from another thread, as Ctrl-C would (the run stays resumable).

    The runner daemon (:mod:`streamflow.cli.daemon`) runs each client's run in a thread of
    its own; when the client goes away (killed, interrupted, timed out) it fires the run's
    ``Interrupt``. Firing before the run is bound (still loading) is remembered.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: tuple[asyncio.AbstractEventLoop, Callable[[], None]] | None = None
        self.fired = False
        self.reason = "interrupted"

    def bind(self, loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
        """Call ``callback`` in ``loop`` when fired (at once if it already was)."""
        with self._lock:
            self._target = (loop, callback)
            fired = self.fired
        if fired:
            loop.call_soon_threadsafe(callback)

    def unbind(self) -> None:
        with self._lock:
            self._target = None

    def fire(self, reason: str = "interrupted") -> None:
        """Stop the run (thread-safe; idempotent); ``reason`` goes into ``RunCancelled``."""
        with self._lock:
            first, self.fired = not self.fired, True
            if first:
                self.reason = reason
            target = self._target
        if first and target is not None:
            target[0].call_soon_threadsafe(target[1])


@dataclass
class RunOptions:
    """Options of ``streamflow run``.

    Attributes:
        workflow: path of the CWL document.
        job: path of the job document, if any.
        outdir: where outputs are delivered.
        run_id: the run id (generated when None).
        workers: jobs this process may run at once (0: none; leave them to agents).
        bus: how to reach the bus.
        workdir: base directory of job working directories.
        retry: the failure manager's retry policy.
        validate_only: stop after validation and translation.
        interrupt: lets another thread stop the run (the runner daemon).
        task_routes: deployment -> the worker pool whose queue gets its tasks instead (the
            runner daemon's private pool); kept by this process only, not recorded: a
            resumed run queues them for the deployment's own workers again.
        reusable: finds jobs of earlier runs this run may reuse (``--cachedir``), given the log.
    """

    workflow: str
    job: str | None = None
    outdir: str = "."
    run_id: str | None = None
    workers: int | None = None
    bus: BusOptions = field(default_factory=BusOptions)
    workdir: str | None = None
    retry: RetrySettings = field(default_factory=RetrySettings)
    validate_only: bool = False
    rerun_of: str | None = None
    config: str | None = None
    locations: dict[str, list[LocationCapacity]] | None = None
    progress: bool = False
    metrics_port: int | None = None
    groups: set[str] | None = None
    shared_fs: bool = True
    interrupt: Interrupt | None = None
    task_routes: dict[str, str] | None = None
    config_run: ConfigRun | None = None
    clean_remote: bool = True
    reusable: Callable[[EventLog], Coroutine[Any, Any, dict[tuple[str, str], ReusableJob]]] | None = None


@dataclass
class PreparedRun:
    """A validated document, its inputs and its graph."""

    name: str
    workflow: str
    job: str | None
    inputs: dict[str, Any]
    graph: WorkflowGraph
    digest: str


@dataclass
class RunResult:
    """How a run ended.

    Attributes:
        run_id: the run.
        status: COMPLETED, FAILED or CANCELLED.
        outputs: the output object (COMPLETED).
        error: the failure (FAILED).
        error_type: the error class name behind the failure.
    """

    run_id: str
    status: str
    outputs: dict[str, Any] | None = None
    error: str | None = None
    error_type: str = ""


def prepare(workflow: str, job: str | None, *, cwd: str | None = None) -> PreparedRun:
    """Load, validate and translate a CWL document with its inputs.

    ``cwd`` is the directory relative inputs of a run without a job document are resolved
    against (default: the current directory).

    Raises:
        WorkflowDefinitionError: invalid document or inputs (exit code 2).
        UnsupportedRequirementError: the document needs an unsupported feature (exit 33).
    """
    from streamflow.cwl.inputs import fill_and_validate_inputs
    from streamflow.cwl.loader import load_document, load_job, split_document
    from streamflow.cwl.tool import check_requirements_supported
    from streamflow.cwl.translator import JOB_REQUIREMENTS, root_requirements, translate
    from streamflow.cwl.utils import bus_safe

    loaded = load_document(workflow)
    process = loaded.process
    job_order = load_job(job, process)
    # ``cwl:requirements`` of the job override the root process's own; they stay in the
    # recorded inputs so that every host's translation (resume, agents) sees them too.
    requirements, hints = root_requirements(process, job_order)
    check_requirements_supported(process, requirements)
    base_dir = str(Path(job).resolve().parent) if job else (cwd or os.getcwd())
    inputs = fill_and_validate_inputs(process, job_order, requirements=requirements, hints=hints,
                                      base_dir=base_dir, cwl_version=loaded.cwl_version,
                                      namespaces=loaded.namespaces)
    if job_order.get(JOB_REQUIREMENTS):
        inputs[JOB_REQUIREMENTS] = job_order[JOB_REQUIREMENTS]
    inputs = bus_safe(inputs)
    local, fragment = split_document(workflow)  # a '#' may be part of the file's name
    name = Path(local).stem
    graph = translate(process, cwl_version=loaded.cwl_version, name=name, job_order=inputs)
    digest = hashlib.sha256(Path(local).read_bytes()).hexdigest()
    return PreparedRun(name=name, workflow=str(Path(local).resolve()) + (f"#{fragment}" if fragment else ""),
                       job=str(Path(job).resolve()) if job else None, inputs=inputs, graph=graph, digest=digest)


def prepare_rerun(submitted: RunSubmitted) -> PreparedRun:
    """Prepare a rerun of a recorded run: same document, same recorded inputs."""
    from streamflow.cwl.loader import load_document, split_document
    from streamflow.cwl.translator import translate

    loaded = load_document(submitted.workflow)
    graph = translate(loaded.process, cwl_version=loaded.cwl_version, name=submitted.name,
                      job_order=submitted.inputs)
    path = Path(split_document(submitted.workflow)[0])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return PreparedRun(name=submitted.name, workflow=submitted.workflow, job=submitted.job,
                       inputs=dict(submitted.inputs), graph=graph, digest=digest)


async def read_submitted(bus: BusOptions, run_id: str) -> RunSubmitted:
    """The ``RunSubmitted`` event of a run.

    Raises:
        RunNotFoundError: no such run.
    """
    async with open_bus(bus) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        first = await log_.first(run_subject(run_id, "wf"))
    if first is None or not isinstance(first[1].body, RunSubmitted):
        raise RunNotFoundError(f"no run {run_id!r} in the event log")
    return first[1].body


def _default_workdir() -> str:
    return str(Path(tempfile.gettempdir()) / "streamflow-jobs")


async def execute_run(log_: EventLog, run_id: str, graph: WorkflowGraph, *, outdir: str, workdir: str,
                      workers: int, retry: RetrySettings, locations: dict[str, list[LocationCapacity]] | None = None,
                      settings: dict[str, Any] | None = None, leases: dict[str, Lease] | None = None,
                      fences: dict[str, Fence] | None = None,
                      progress: bool = False, metrics_port: int | None = None,
                      groups: set[str] | None = None,
                      shared_fs: bool = True, interrupt: Interrupt | None = None,
                      config_run: ConfigRun | None = None, clean_remote: bool = True) -> RunResult:
    """Host every actor of a run in this process until the run has a final event.

    Args:
        log_: the event log.
        run_id: the run (its ``RunSubmitted`` must be in the log).
        graph: its dataflow graph.
        outdir: where outputs are delivered.
        workdir: base of job working directories.
        workers: local executor concurrency (0: none).
        retry: the retry policy.
        locations: deployment -> locations (default: this machine as ``__LOCAL__``).
        settings: run settings shared by the actors (generation, reuse index...).
        leases: the leases of the hosted groups (:func:`hold_groups`), renewed while hosting
            and released at the end.
        fences: the hosted groups' fences: every append of their actors carries its group's
            (None: unfenced, for tests driving a host directly).
        progress: show the live progress display.
        metrics_port: serve Prometheus metrics on this port.
        groups: which actor groups to host (:data:`ACTOR_GROUPS`; None: all of them).
        shared_fs: whether the workers here share the filesystem with the rest of the run.
        interrupt: lets another thread stop the run as Ctrl-C would.
        config_run: the run's ``streamflow.yml``: its deployments (deployed in this process
            when needed, torn down at the end), their workers, and the scheduling policy.
        clean_remote: when the run completes, remove its directory from the remote locations
            this process deployed (``--leave-tmpdir`` keeps it).

    Returns:
        How the run ended.
    """
    fences = dict(fences or {})
    held = list((leases or {}).values())
    ctx = RunContext(run_id=run_id, nc=log_.nc, log=log_, graph=graph, workdir=workdir, outdir=outdir,
                     settings=settings or {}, epoch=max((f.epoch for f in fences.values()), default=0),
                     fences=fences)
    done = asyncio.Event()
    locations = locations or {"__LOCAL__": [local_capacity()]}
    hosted = set(ACTOR_GROUPS) if groups is None else set(groups)
    supervisor = RunSupervisor(ctx, done)
    actors: list[Any] = []
    if "ports" in hosted:
        producers = graph.producers_by_port()
        actors.extend(PortActor(ctx, pid, producers.get(pid, [])) for pid in graph.ports)
    if "steps" in hosted:
        actors.extend(make_step_actor(ctx, step) for step in graph.steps.values())
    declared = dict(config_run.deployments) if config_run is not None else {}
    manager = DefaultDeploymentManager(config_dir=config_run.config_dir if config_run is not None else None)
    for deployment_config in declared.values():
        manager.register(deployment_config)
    deployer: DeploymentActor | None = None
    if "scheduler" in hosted:
        actors.append(SchedulerActor(ctx, locations, policy=_policy(config_run), filters=_filters(config_run)))
    if "data-manager" in hosted:
        actors.append(DataManagerActor(ctx, data=DefaultDataManager(deployments=manager)))
        here = local_capacity()
        deployer = DeploymentActor(ctx, manager, local=LocationInfo(
            name=here.name, hostname=here.hostname, local=True, cores=here.cores, memory=here.memory)
            if workers > 0 else None)
        actors.append(deployer)
        with contextlib.suppress(Exception):  # announcements are optional: agents may not exist
            await agents_bucket(log_.js, create=True)
            deployer.agents_changed(await list_agents(log_.js))
    if "failure-manager" in hosted:
        actors.append(FailureManagerActor(ctx, retry))
    watcher = RunWatcher(ctx, done)
    actors.append(supervisor if "supervisor" in hosted else watcher)
    for actor in actors:
        actor.group = _group_of(actor)

    async def _graph_for(other: str) -> WorkflowGraph:
        if other == run_id:
            return graph
        return await load_graph(log_, other)

    background: list[Callable[[], Coroutine[Any, Any, None]]] = []
    for lease in held:
        background.append(functools.partial(lease.keep_alive, done))
    if deployer is not None:
        background.append(functools.partial(_watch_agents, log_, deployer, done))
    if progress:
        from streamflow.cli.progress import watch_progress

        background.append(functools.partial(watch_progress, log_, run_id, done))
    if metrics_port is not None:
        from streamflow.cli.metrics import serve_metrics

        background.append(functools.partial(serve_metrics, log_.nc, log_, metrics_port, done))
    drain: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]] = []
    if workers > 0:
        for deployment in dict.fromkeys([*locations, *declared]):
            # Workers serve every run's tasks (nak-ing other runs' tasks livelocked two concurrent
            # runs: the server kept redelivering to the process that had just handed them back).
            # When this run ends they finish the jobs of other runs they hold (drain) rather
            # than killing them; an interrupt hands those back at once instead.
            worker = Worker(log_, deployment, _graph_for, workdir=workdir, concurrency=workers, shared_fs=shared_fs,
                            deployments=manager)
            drain.append(worker.run)
    from actors.checkpoint_manager import CheckpointManager

    every = int(os.environ.get("STREAMFLOW_SNAPSHOT_EVERY", "5000"))
    force = asyncio.Event()
    host = ActorHost(ctx, actors, background, checkpoints=CheckpointManager(log_, run_id, graph, every, fences),
                     drain=drain, force=force)
    loop = asyncio.get_running_loop()
    interrupted = False

    def _interrupt() -> None:
        # Ctrl-C / SIGTERM: record the cancellation (the run stays resumable), then stop; the
        # jobs held for other runs are handed back rather than waited for.
        nonlocal interrupted
        force.set()
        if interrupted:
            done.set()
            return
        interrupted = True
        supervisor.cancel_reason = (interrupt.reason if interrupt is not None and interrupt.fired
                                    else "interrupted (SIGINT/SIGTERM)")
        supervisor.wake()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, _interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):
            pass  # not the main thread (the runner daemon): ``interrupt`` stands in
    if interrupt is not None:
        interrupt.bind(loop, _interrupt)
    try:
        await host.run(done)
    finally:
        # Tear down what this process deployed (recorded), then anything else it brought up.
        if deployer is not None:
            finished = supervisor.final if "supervisor" in hosted else watcher.final
            await asyncio.shield(deployer.undeploy_all(clean=clean_remote and isinstance(finished, RunCompleted)))
        await asyncio.shield(manager.close())
        if interrupt is not None:
            interrupt.unbind()
        for sig in installed:
            loop.remove_signal_handler(sig)
        for lease in held:
            await lease.release()
    final = supervisor.final if "supervisor" in hosted else watcher.final
    if isinstance(final, RunCompleted):
        return RunResult(run_id, "COMPLETED", outputs=final.outputs)
    if isinstance(final, RunFailed):
        return RunResult(run_id, "FAILED", error=final.error, error_type=final.error_type)
    return RunResult(run_id, "CANCELLED", error=getattr(final, "reason", None))


async def _watch_agents(log_: EventLog, deployer: DeploymentActor, done: asyncio.Event) -> None:
    """Tell the deployment actor which agents are live, every few seconds, until the run ends."""
    while not done.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), ANNOUNCE_EVERY)
        if done.is_set():
            return
        try:
            deployer.agents_changed(await list_agents(log_.js))
        except Exception as exc:  # the bus is busy or gone: the next round tries again
            log.debug("agents_unreadable", error=str(exc))


def _filters(config_run: ConfigRun | None) -> dict[str, BindingFilter]:
    """The run's binding filters, from the plugin registry."""
    from streamflow.plugins import Registry

    if config_run is None:
        return {}
    return {name: Registry.default().get("binding_filter", kind)(name, **config)
            for name, (kind, config) in config_run.filters.items()}


def _policy(config_run: ConfigRun | None) -> Policy:
    """The run's scheduling policy, from the plugin registry (default ``data_locality``)."""
    if config_run is None:
        # The default needs no plugin registry: loading it imports every connector (~20 ms).
        from streamflow.scheduling.policy import DataLocalityPolicy

        return DataLocalityPolicy()
    from streamflow.plugins import Registry

    name, config = config_run.policy
    policy: Policy = Registry.default().get("policy", name)(**config)
    return policy


_GROUP_OF: dict[type, str] = {}


def _group_of(actor: Any) -> str | None:
    """The actor group an actor belongs to (None: the run watcher, which writes nothing)."""
    if not _GROUP_OF:
        from actors.step import StepActor

        _GROUP_OF.update({PortActor: "ports", StepActor: "steps", SchedulerActor: "scheduler",
                          DataManagerActor: "data-manager", DeploymentActor: "data-manager",
                          FailureManagerActor: "failure-manager", RunSupervisor: "supervisor"})
    for klass in type(actor).__mro__:
        if klass in _GROUP_OF:
            return _GROUP_OF[klass]
    return None


async def hold_groups(log_: EventLog, run_id: str, groups: set[str] | None) -> tuple[dict[str, Lease], dict[str, Fence]]:
    """Take the lease of every hosted actor group (None: all of them) and write their fences.

    A full host holds every group, so no ``streamflow host --actors`` can host a second set
    of any of them; each fence makes the server refuse the appends of the group's previous
    holder from now on.

    Raises:
        LeaseError: a live process holds one of them (nothing is kept then).
    """
    leases: dict[str, Lease] = {}
    try:
        for group in sorted(set(ACTOR_GROUPS) if groups is None else groups):
            leases[group] = await acquire_lease(log_.js, lease_key(run_id, group))
    except BaseException:
        for lease in leases.values():
            await lease.release()
        raise
    fences = {group: await write_fence(log_, run_id, group, lease) for group, lease in leases.items()}
    return leases, fences


_graph_cache: OrderedDict[str, WorkflowGraph] = OrderedDict()
_GRAPH_CACHE_SIZE = 64  # a long-lived process (agent, runner daemon) serves many runs


def _cache_graph(run_id: str, graph: WorkflowGraph) -> None:
    _graph_cache[run_id] = graph
    _graph_cache.move_to_end(run_id)
    while len(_graph_cache) > _GRAPH_CACHE_SIZE:
        _graph_cache.popitem(last=False)


async def load_graph(log_: EventLog, run_id: str) -> WorkflowGraph:
    """Rebuild a run's graph from its ``RunSubmitted`` event (deterministic translation).

    Raises:
        RunNotFoundError: the run is not in the log.
    """
    cached = _graph_cache.get(run_id)
    if cached is not None:
        return cached
    first = await log_.first(run_subject(run_id, "wf"))
    if first is None or not isinstance(first[1].body, RunSubmitted):
        raise RunNotFoundError(f"no run {run_id!r} in the event log")
    submitted = first[1].body
    from streamflow.cwl.loader import load_document
    from streamflow.cwl.translator import translate

    loaded = await asyncio.to_thread(load_document, submitted.workflow)
    graph = translate(loaded.process, cwl_version=loaded.cwl_version, name=submitted.name, job_order=submitted.inputs)
    if submitted.bindings:
        from streamflow.cli.recorded import apply_recorded_bindings

        apply_recorded_bindings(graph, submitted.bindings)  # as submitted, whatever the file says now
    elif submitted.config:  # recorded by an older version: only the file's path
        from streamflow.cli.config_run import apply_bindings, load_config_run

        apply_bindings(graph, load_config_run(submitted.config))
    _cache_graph(run_id, graph)
    return graph


async def submit_and_run(options: RunOptions, prepared: PreparedRun, *, announce: Any = None) -> RunResult:
    """Record a new run and execute it here.

    Args:
        options: the run options.
        prepared: the validated document.
        announce: called with the run id once it is recorded (to print it).

    Raises:
        WorkflowDefinitionError: the run id is invalid or already used.
    """
    from streamflow.cli.recorded import record_config, retry_policy

    run_id = options.run_id or new_run_id()
    if not valid_id(run_id):
        raise WorkflowDefinitionError(f"--run-id {run_id!r}: expected letters, digits, '_' or '-' only")
    outdir = str(Path(options.outdir).resolve())
    workdir = str(Path(options.workdir or _default_workdir()).resolve())
    workers = options.workers if options.workers is not None else (os.cpu_count() or 1)
    recorded = record_config(options.config_run, prepared.graph) if options.config_run is not None else {}
    async with open_bus(options.bus) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        submitted = RunSubmitted(
            name=prepared.name, workflow=prepared.workflow, job=prepared.job, inputs=prepared.inputs,
            outdir=outdir, workdir=workdir, engine_version=__version__,
            steps={s.id: s.name for s in prepared.graph.steps.values()},
            ports={p.id: p.name for p in prepared.graph.ports.values()},
            document_digest=prepared.digest,
            rerun_of=options.rerun_of,
            config=options.config,
            retry=retry_policy(options.retry),
            **recorded,
        )
        from streamflow.data.limits import check_inputs

        check_inputs(submitted, nc.max_payload)  # before anything is written: too large is exit 2
        try:
            # The run's creation: the only append to ``wf`` not made by the supervisor's lease
            # holder, guarded by "the subject is empty".
            await log_.append(run_id, "wf", None, submitted, producer="cli", key="submitted", expected_last_seq=0)
        except ConcurrencyError:
            raise WorkflowDefinitionError(f"--run-id {run_id!r}: a run with this id already exists") from None
        if announce is not None:
            announce(run_id)
        _cache_graph(run_id, prepared.graph)
        hosted = options.groups
        leases, fences = await hold_groups(log_, run_id, hosted)
        if "supervisor" in fences:
            await log_.append(run_id, "wf", None, RunStarted(host=os.uname().nodename, pid=os.getpid()),
                              producer="run", key="started", fence=fences["supervisor"])
        settings: dict[str, Any] = {"generation": 0}
        if options.task_routes:
            settings["task_routes"] = dict(options.task_routes)
        if options.reusable is not None:
            settings["reuse"] = await options.reusable(log_)
        if options.rerun_of:
            settings["reuse"] = {**settings.get("reuse", {}), **await reuse_index(log_, options.rerun_of)}
        if not options.shared_fs:
            from streamflow.data.objectstore import publish_paths

            await publish_paths(log_.js, prepared.inputs)  # agents elsewhere fetch what they miss
        return await execute_run(log_, run_id, prepared.graph, outdir=outdir, workdir=workdir, workers=workers,
                                 retry=options.retry, settings=settings, leases=leases, fences=fences,
                                 locations=options.locations, progress=options.progress,
                                 metrics_port=options.metrics_port, groups=hosted,
                                 shared_fs=options.shared_fs, interrupt=options.interrupt,
                                 config_run=options.config_run, clean_remote=options.clean_remote)


async def resume_run(run_id: str, *, bus: BusOptions, workers: int | None = None,
                     retry: RetrySettings | None = None, announce: Any = None) -> RunResult:
    """Continue a run whose processes died (or that was cancelled), from its log.

    It hosts every actor group (taking every group's lease: refused while any process
    hosts one of them). The retry policy, bindings and deployments are those recorded in
    ``RunSubmitted`` (``retry`` overrides the policy when given), whatever the
    ``streamflow.yml`` says now.

    Raises:
        RunNotFoundError: no such run.
        LeaseError: the run (or one of its actor groups) is live in another process.
        ConfigError: the run's deployments need a secret its ``streamflow.yml`` no longer has.
    """
    from streamflow.cli.recorded import config_for_resume, retry_settings

    async with open_bus(bus) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        first = await log_.first(run_subject(run_id, "wf"))
        if first is None or not isinstance(first[1].body, RunSubmitted):
            raise RunNotFoundError(f"no run {run_id!r} in the event log")
        submitted = first[1].body
        summary = RunSummary(run_id=run_id)
        async for record in log_.read(run_id, subject_filter=run_subject(run_id, "wf")):
            summary.apply(record)
        if summary.status == "COMPLETED":
            return RunResult(run_id, "COMPLETED", outputs=summary.outputs)
        if summary.status == "FAILED":
            return RunResult(run_id, "FAILED", error=f"the run failed ({summary.error}); use 'streamflow rerun "
                             f"{run_id}' to replay it without redoing what succeeded")
        config_run = config_for_resume(submitted) if submitted.config else None
        leases, fences = await hold_groups(log_, run_id, None)
        try:
            graph = await load_graph(log_, run_id)
            generation = summary.resumed + 1
            await log_.append(run_id, "wf", None, RunResumed(host=os.uname().nodename, pid=os.getpid(),
                                                             attempt=generation),
                              producer="run", key=f"resumed/{generation}", fence=fences["supervisor"])
        except BaseException:
            for lease in leases.values():
                await lease.release()
            raise
        if announce is not None:
            announce(run_id)
        settings: dict[str, Any] = {"generation": generation}
        if submitted.rerun_of:
            settings["reuse"] = await reuse_index(log_, submitted.rerun_of)
        return await execute_run(
            log_, run_id, graph, outdir=submitted.outdir, workdir=submitted.workdir,
            workers=workers if workers is not None else (os.cpu_count() or 1),
            retry=retry or retry_settings(submitted, config_run), settings=settings, leases=leases, fences=fences,
            locations=config_run.locations if config_run is not None else None, config_run=config_run)


@dataclass(frozen=True)
class ReusableJob:
    """A job completed by an earlier run, that a rerun may reuse.

    Attributes:
        run_id: the earlier run.
        job: its job id there.
        inputs: the input object it ran with.
        outputs: its outputs.
    """

    run_id: str
    job: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]

    def matches(self, inputs: dict[str, Any]) -> bool:
        """Same inputs, and every output file still exists."""
        if _canonical(inputs) != _canonical(self.inputs):
            return False
        from actors.data_manager import iter_paths

        return all(os.path.exists(path) for path, _ in iter_paths(self.outputs))


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


async def reuse_index(log_: EventLog, run_id: str) -> dict[tuple[str, str], ReusableJob]:
    """Index the completed jobs of a run (and of the runs it reused) by (step name, tag)."""
    first = await log_.first(run_subject(run_id, "wf"))
    if first is None or not isinstance(first[1].body, RunSubmitted):
        raise RunNotFoundError(f"no run {run_id!r} in the event log")
    steps = first[1].body.steps
    requested: dict[str, JobRequested] = {}
    index: dict[tuple[str, str], ReusableJob] = {}
    async for record in log_.read(run_id):
        body = record.body
        if isinstance(body, JobRequested):
            requested[body.job] = body
        elif isinstance(body, JobCompleted) and body.job in requested:
            req = requested[body.job]
            index[(steps.get(req.step, req.step), req.tag)] = ReusableJob(run_id, body.job, req.inputs, body.outputs)
        elif isinstance(body, JobReused) and record.agg_id is not None:
            name = steps.get(record.agg_id, record.agg_id)
            index[(name, body.tag)] = ReusableJob(body.from_run, body.from_job, body.inputs, body.outputs)
    return index


async def host_run(run_id: str, *, bus: BusOptions, groups: set[str], workers: int = 0, wait: float = 60.0,
                   retry: RetrySettings | None = None) -> RunResult:
    """Host some actor groups of a run submitted elsewhere, until the run ends.

    Args:
        run_id: the run (waited for up to ``wait`` seconds if not submitted yet).
        bus: how to reach the bus.
        groups: the actor groups to host here.
        workers: local executor concurrency.
        wait: seconds to wait for the run to be submitted.
        retry: the retry policy (for the failure manager; default: the one recorded).

    Raises:
        RunNotFoundError: the run did not appear in time.
        LeaseError: another live process hosts one of these groups.
    """
    from streamflow.cli.recorded import config_for_resume, retry_settings

    async with open_bus(bus) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        deadline = asyncio.get_running_loop().time() + wait
        while True:
            first = await log_.first(run_subject(run_id, "wf"))
            if first is not None and isinstance(first[1].body, RunSubmitted):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise RunNotFoundError(f"run {run_id!r} was not submitted within {wait:.0f}s")
            await asyncio.sleep(0.2)
        submitted = first[1].body
        config_run = config_for_resume(submitted) if submitted.config else None
        leases, fences = await hold_groups(log_, run_id, groups)
        summary = RunSummary(run_id=run_id)
        async for record in log_.read(run_id, subject_filter=run_subject(run_id, "wf")):
            summary.apply(record)
        if "supervisor" in fences and summary.status == "SUBMITTED":
            await log_.append(run_id, "wf", None, RunStarted(host=os.uname().nodename, pid=os.getpid()),
                              producer="run", key="started", fence=fences["supervisor"])
        graph = await load_graph(log_, run_id)
        # The generation is the run's (how many times it was resumed), or workers would drop
        # every task queued here as left over from before the last resume.
        return await execute_run(log_, run_id, graph, outdir=submitted.outdir, workdir=submitted.workdir,
                                 workers=workers, retry=retry or retry_settings(submitted, config_run),
                                 settings={"generation": summary.resumed}, leases=leases, fences=fences,
                                 groups=groups, locations=config_run.locations if config_run is not None else None,
                                 config_run=config_run)
