"""Executor workers: they pull job tasks from the work queue and run them.

A worker binds the durable pull consumer of a deployment (``workers-<deployment>`` on
``sf.task.<deployment>.>``); more workers, in this process or in agents elsewhere, mean
more pollers, with no rebalancing. For each task it

1. skips it (and acks) if the job's completion is already in the log;
2. appends ``JobStarted`` under an expected-sequence check on the job's subject, so two
   workers cannot both own an attempt (the first delivery of a first attempt expects an
   empty subject without reading it first; on a conflict it takes the careful path);
3. runs the attempt in a fresh private directory (:mod:`streamflow.data.jobdirs`),
   telling the server it is still working (``in_progress``) while it runs;
4. appends ``JobCompleted`` or ``JobFailed`` (expected sequence: its own ``JobStarted``;
   a worker that lost the race discards its result), and only then acks the task.

A worker that dies mid-job leaves the task unacked: the server redelivers it after
``ack_wait`` and another worker runs it again as a new delivery in a fresh directory.
A task delivered more than ``STREAMFLOW_MAX_DELIVER`` times (default 5) without a result
is a *poison task* (it kills whatever runs it): the worker that receives it once more
records a ``JobFailed`` that is not retried, naming the reason, instead of running it
(the consumer's ``max_deliver`` is a backstop above that).

Workers serve every run's tasks; when the process's own run ends, a worker stops pulling
and finishes the jobs it holds for other runs (its caller waits: a process leaving does
not take a borrowed job down with it), while the attempts of runs that are over are
stopped at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import posixpath
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.js import api

from actors._attempt import discard_workdir, has_files, recording, restore_outputs, with_duration
from events.log import TASKS_STREAM, EventLog
from events.schema import (
    JobCompleted,
    JobFailed,
    JobStarted,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunSubmitted,
)
from events.tasks import JobTask, decode_task
from streamflow.core.deployment import LOCAL_DEPLOYMENT, Connector, ExecutionLocation
from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.tool import execute_process, tool_output
from streamflow.data.jobdirs import UnsafeDirectoryError, fresh_attempt_dir
from streamflow.data.limits import fit_job_result
from streamflow.data.manager import LOCAL_LOCATION
from streamflow.data.objectstore import fetch_missing, publish_paths
from streamflow.deployment.execution import ConnectorCommand, use_pidfd_child_watcher
from streamflow.errors import (
    ConcurrencyError,
    DeploymentError,
    InputValidationError,
    JobFailedError,
    StreamFlowError,
    UnsupportedRequirementError,
    WorkflowDefinitionError,
)
from streamflow.workflow.graph import ExecuteStep, WorkflowGraph

__all__ = ["ConnectorSource", "GraphProvider", "RunHere", "Worker", "consumer_name"]

log = structlog.get_logger("streamflow.worker")

GraphProvider = Callable[[str], Awaitable[WorkflowGraph]]


class ConnectorSource(Protocol):
    """Where a worker gets connectors: a :class:`~streamflow.core.deployment.DeploymentManager`."""

    async def get_connector(self, deployment_name: str) -> Connector | None:
        """The connector of a deployment (deployed if needed), or None if unknown."""


def _positive_env(name: str, default: float) -> float:
    """A positive number from the environment variable ``name`` (``default`` if unset or invalid)."""
    try:
        value = float(os.environ.get(name, str(default)))
    except ValueError:
        return default
    return value if value > 0 else default


#: Seconds the server waits for a sign of life before redelivering a task (env
#: ``STREAMFLOW_ACK_WAIT``); workers heartbeat every third of it.
ACK_WAIT = _positive_env("STREAMFLOW_ACK_WAIT", 10.0)

#: Deliveries of one task without a result before it is failed as a poison task (env
#: ``STREAMFLOW_MAX_DELIVER``).
MAX_DELIVER = int(_positive_env("STREAMFLOW_MAX_DELIVER", 5))


#: Seconds a worker trusts a "run still live" answer before reading the run's state again.
LIVE_TTL = 0.5

#: Seconds a pull for a task waits: an idle worker's, and one within ``BUSY_WINDOW`` seconds
#: of a task starting or ending (so that a run's end does not wait out a long pull).
IDLE_PULL = 0.5
SHORT_PULL = 0.05
BUSY_WINDOW = 2.0


def consumer_name(deployment: str) -> str:
    """The durable consumer shared by every worker of a deployment."""
    return f"workers-{deployment}"


class Worker:
    """Pulls and runs job tasks of one deployment.

    Args:
        log_: the event log.
        deployment: the deployment whose tasks it runs.
        graphs: returns the dataflow graph of a run (to find the process of a step).
        workdir: base directory of the attempts' working directories (None: the one each
            run recorded in its ``RunSubmitted``, for a worker sharing the submitter's machine).
        concurrency: how many jobs it runs at once.
        name: the worker's id in events.
        ack_wait: seconds before the server redelivers a task without a heartbeat.
        shared_fs: whether this machine shares its filesystem with the rest of the run;
            when not, outputs are published to the object store for others to fetch.
        inactive_threshold: seconds after which the server deletes the consumer once nobody
            pulls from it (None: never; for the private pool of a short-lived process).
        tool_output: where a run's tools write what they do not redirect (None: this
            process's standard error), by run id.
        deployments: where the connector of ``deployment`` comes from (None: only this
            machine, ``__LOCAL__``, can be served).
    """

    def __init__(self, log_: EventLog, deployment: str, graphs: GraphProvider, *, workdir: str | None,
                 concurrency: int = 1, name: str | None = None, ack_wait: float = ACK_WAIT,
                 shared_fs: bool = True, inactive_threshold: float | None = None,
                 tool_output: Callable[[str], Callable[[bytes], None] | None] | None = None,
                 deployments: ConnectorSource | None = None) -> None:
        self.inactive_threshold = inactive_threshold
        self.tool_output = tool_output
        self.ack_wait = ack_wait
        self.shared_fs = shared_fs
        self.log = log_
        self.deployment = deployment
        self.graphs = graphs
        self.workdir = workdir
        self.concurrency = max(1, concurrency)
        self.name = name or f"{socket.gethostname()}/{os.getpid()}"
        self.running = 0
        self.completed = 0
        self._workdirs: dict[str, str] = {}
        self.deployments = deployments
        self._locations: dict[tuple[str, str], ExecutionLocation] = {}
        self._heartbeats: set[asyncio.Task[None]] = set()
        self._live: dict[str, tuple[float, int]] = {}  # run -> (valid until, its generation): live runs
        self.max_deliver = MAX_DELIVER
        self._busy_until = 0.0  # pulls are short until then (see run)
        self._defaults: dict[tuple[str, str], bool] = {}  # (run, step) -> File/Directory defaults?

    async def _subscribe(self) -> Any:
        config = api.ConsumerConfig(
            name=consumer_name(self.deployment),
            durable_name=consumer_name(self.deployment),
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=-1,
            # A backstop: tasks are failed as poison after ``max_deliver`` deliveries already.
            max_deliver=self.max_deliver + 3,
            filter_subject=f"sf.task.{self.deployment}.>",
            inactive_threshold=self.inactive_threshold,
        )
        # Create the consumer, or update its ack_wait if it exists (pull_subscribe alone keeps
        # whatever configuration the first worker created it with). With a name and a filter,
        # the request goes to $JS.API.CONSUMER.CREATE.SF_TASKS.<name>.<filter>, which an
        # account's permissions can pin down (docs/deploy.md, least privilege).
        await self.log.js.add_consumer(TASKS_STREAM, config=config)
        return await self.log.js.pull_subscribe_bind(durable=consumer_name(self.deployment), stream=TASKS_STREAM)

    async def run(self, stop: asyncio.Event) -> None:
        """Pull and run tasks until ``stop`` is set; then finish the running ones (drain)."""
        use_pidfd_child_watcher()  # no thread per job process (Python 3.11)
        psub = await self._subscribe()
        slots = asyncio.Semaphore(self.concurrency)
        held: dict[asyncio.Task[None], JobTask | None] = {}

        async def _stop_obsolete() -> None:
            # Draining: once stopped, the attempts of runs that are over stop at once; the
            # jobs of other, live runs finish (their processes wait for them).
            await stop.wait()
            for child, task in list(held.items()):
                with contextlib.suppress(Exception):
                    if task is None or await self._obsolete(task):
                        child.cancel()
            if held:
                log.info("worker_draining", jobs=len(held))

        try:
            async with asyncio.TaskGroup() as tg:
                stopper = tg.create_task(_stop_obsolete())
                while not stop.is_set():
                    await slots.acquire()
                    if stop.is_set():
                        slots.release()
                        break
                    # Within BUSY_WINDOW of a task starting or ending, pull for SHORT_PULL only: the
                    # process's run may be about to end, and its end waits for the pull in flight
                    # (never cancelled: a task delivered into a cancelled pull would wait ack_wait
                    # and count as a delivery). An idle worker pulls for IDLE_PULL.
                    short = time.monotonic() < self._busy_until
                    try:
                        msgs = await psub.fetch(1, timeout=SHORT_PULL if short else IDLE_PULL)
                    except (TimeoutError, nats.errors.TimeoutError):
                        slots.release()
                        continue
                    except nats.errors.ConnectionClosedError:
                        slots.release()
                        break
                    self._busy_until = time.monotonic() + BUSY_WINDOW
                    for msg in msgs:
                        try:
                            task: JobTask | None = decode_task(msg.data)
                        except msgspec.DecodeError:
                            task = None
                        child = tg.create_task(self._guarded(msg, slots))
                        held[child] = task
                        child.add_done_callback(held.pop)
                if not stop.is_set():  # the connection closed
                    stopper.cancel()
        finally:
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _guarded(self, msg: Any, slots: asyncio.Semaphore) -> None:
        self.running += 1
        try:
            await self.handle(msg)
        finally:
            self.running -= 1
            self._busy_until = time.monotonic() + BUSY_WINDOW
            slots.release()

    async def handle(self, msg: Any) -> None:
        """Run one task message (see the module docstring).

        Stopped at any point before its result is recorded (cancel, Ctrl-C, the process
        leaving), the task is handed back at once (``nak``) so that a resumed run or
        another worker picks it up without waiting for ``ack_wait``.
        """
        try:
            await self._handle(msg)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await asyncio.shield(msg.nak())
            raise

    async def _handle(self, msg: Any) -> None:
        task = decode_task(msg.data)
        delivery = int(msg.metadata.num_delivered or 1)
        subject = f"sf.ev.{task.run_id}.job.{task.job}"
        with structlog.contextvars.bound_contextvars(run_id=task.run_id, job=task.job, actor=f"worker:{self.name}"):
            if await self._obsolete(task, fresh=False):
                await msg.ack()
                return
            if _first_try(task, delivery):
                # The first delivery of a job's first attempt: its subject is normally empty, so
                # JobStarted goes out checked against "empty" without reading the subject first
                # (one direct get less per job). Anything there already fails the check, and
                # the task then takes the careful path below.
                workdir, unsafe = await self._fresh_workdir(task, delivery)
                if unsafe is None:
                    try:
                        started = await self._append_started(task, delivery, workdir, 0)
                    except ConcurrencyError:
                        discard_workdir(workdir)
                    else:
                        await self._run_attempt(msg, task, delivery, workdir, None, started.stream_seq)
                        return
            last = await self.log.last(subject)
            if last is not None and self._already_recorded(last[1].body, task):
                await msg.ack()
                return
            if delivery > self.max_deliver:
                await self._poison(msg, task, delivery, last[0] if last else 0)
                return
            workdir, unsafe = await self._fresh_workdir(task, delivery)
            try:
                started = await self._append_started(task, delivery, workdir, last[0] if last else 0)
            except ConcurrencyError:
                # Another worker owns this attempt now; the server will not redeliver an acked task.
                if unsafe is None:
                    discard_workdir(workdir)
                await msg.ack()
                return
            await self._run_attempt(msg, task, delivery, workdir, unsafe, started.stream_seq)

    async def _fresh_workdir(self, task: JobTask, delivery: int) -> tuple[Path, UnsafeDirectoryError | None]:
        """A private directory for this delivery (streamflow/data/jobdirs.py), or the base
        directory and why none could be made safely."""
        base = self.workdir if self.workdir is not None else await self._run_workdir(task.run_id)
        try:
            # In a thread even when it is only a few mkdir calls: they cost the kernel ~0.1 ms
            # each on a busy disk, which a thread spends beside the loop (a hop is ~0.05 ms).
            return await asyncio.to_thread(_new_workdir, base, task, delivery), None
        except UnsafeDirectoryError as exc:
            return Path(base), exc

    async def _append_started(self, task: JobTask, delivery: int, workdir: Path, last_seq: int) -> Any:
        """Record ``JobStarted``, checked against the job subject's last sequence ``last_seq``.

        Raises:
            ConcurrencyError: the subject moved on (another worker owns the attempt).
        """
        return await self.log.append(
            task.run_id, "job", task.job,
            JobStarted(job=task.job, attempt=task.attempt, delivery=delivery, worker=self.name,
                       workdir=str(workdir)),
            producer=f"worker:{self.name}", key=f"{task.attempt}/{task.generation}/{delivery}",
            expected_last_seq=last_seq)

    async def _run_attempt(self, msg: Any, task: JobTask, delivery: int, workdir: Path,
                           unsafe: UnsafeDirectoryError | None, started_seq: int) -> None:
        """Run an attempt this worker recorded as started, record its result, ack the task."""
        begin = time.monotonic()
        attempt = asyncio.create_task(self._execute(task, workdir, delivery) if unsafe is None
                                      else _refused(task, delivery, unsafe))
        finished = asyncio.Event()
        beating: list[asyncio.Task[None]] = []

        def _beat() -> None:
            # Started only for an attempt that lasts a third of ack_wait: a short job (most of
            # a scatter) makes no heartbeat task, no timer task and no wake-up at its end.
            if not finished.is_set():
                heartbeat = asyncio.create_task(self._heartbeat(msg, task, attempt, finished, at_once=True))
                self._heartbeats.add(heartbeat)
                heartbeat.add_done_callback(self._heartbeats.discard)
                beating.append(heartbeat)

        first_beat = asyncio.get_running_loop().call_later(self.ack_wait / 3, _beat)
        try:
            body = await attempt
        except asyncio.CancelledError:
            if not attempt.cancelled() or _cancelling():
                raise
            # Stopped by the heartbeat: the run ended or was resumed meanwhile.
            log.info("job_abandoned_run_over", attempt=task.attempt)
            await msg.ack()
            return
        finally:
            finished.set()  # the heartbeat ends on its own (never waited for: see _heartbeat)
            attempt.cancel()
            first_beat.cancel()
            for heartbeat in beating:
                heartbeat.cancel()
        if task.restore is not None and isinstance(body, JobCompleted):
            body = await asyncio.to_thread(restore_outputs, body, task.restore)
        body = with_duration(body, time.monotonic() - begin)
        body = fit_job_result(body, self.log.nc.max_payload)  # too large to record: a clean JobFailed
        try:
            await self.log.append(task.run_id, "job", task.job, body, producer=f"worker:{self.name}",
                                  key=f"{task.attempt}/{task.generation}/{delivery}",
                                  expected_last_seq=started_seq)
        except ConcurrencyError:
            log.warning("job_result_discarded", attempt=task.attempt, delivery=delivery)
            await msg.ack()
            return
        await msg.ack()
        self.completed += 1
        if isinstance(body, JobCompleted):
            log.info("job_completed", attempt=task.attempt, duration=round(body.duration, 3))
        else:
            log.info("job_failed", attempt=task.attempt, exit_code=body.exit_code, error=body.error)

    async def _poison(self, msg: Any, task: JobTask, delivery: int, last_seq: int) -> None:
        """Fail a task that was delivered too often without a result (it kills its workers)."""
        error = (f"job {task.job} attempt {task.attempt} was delivered {delivery - 1} times and its worker never "
                 f"finished it (the worker died or was killed each time): failed as a poison task after "
                 f"STREAMFLOW_MAX_DELIVER={self.max_deliver} deliveries")
        log.error("job_poison_task", attempt=task.attempt, deliveries=delivery - 1)
        with contextlib.suppress(ConcurrencyError):  # another worker recorded it first
            await self.log.append(task.run_id, "job", task.job,
                                  JobFailed(job=task.job, attempt=task.attempt, delivery=delivery, error=error,
                                            retryable=False, error_type="PoisonTask"),
                                  producer=f"worker:{self.name}", key=f"{task.attempt}/{task.generation}/poison",
                                  expected_last_seq=last_seq)
        await msg.ack()

    async def _run_workdir(self, run_id: str) -> str:
        """The base working directory a run recorded when it was submitted."""
        cached = self._workdirs.get(run_id)
        if cached is None:
            first = await self.log.first(f"sf.ev.{run_id}.wf")
            body = first[1].body if first is not None else None
            if not isinstance(body, RunSubmitted):
                raise WorkflowDefinitionError(f"run {run_id}: no RunSubmitted event")
            cached = self._workdirs[run_id] = body.workdir
        return cached

    async def _obsolete(self, task: JobTask, *, fresh: bool = True) -> bool:
        """Whether the run is over, or was resumed after this task was queued.

        With ``fresh=False`` a "still live" answer read less than ``LIVE_TTL`` seconds ago
        for the same run is reused (one direct get per run and interval instead of one per
        task). The check only saves work: whichever worker runs an attempt owns it through
        the job subject's expected sequence, and a running attempt of a run that ended is
        stopped by its heartbeat, which always reads afresh.
        """
        if not fresh:
            cached = self._live.get(task.run_id)
            if cached is not None and cached[0] > time.monotonic():
                return cached[1] > task.generation
        last = await self.log.last(f"sf.ev.{task.run_id}.wf")
        if last is None:
            return True
        body = last[1].body
        if isinstance(body, RunCompleted | RunFailed | RunCancelled):
            self._live.pop(task.run_id, None)
            return True
        generation = body.attempt if isinstance(body, RunResumed) else 0
        self._live[task.run_id] = (time.monotonic() + LIVE_TTL, generation)
        return generation > task.generation

    @staticmethod
    def _already_recorded(body: Any, task: JobTask) -> bool:
        if isinstance(body, JobCompleted):
            return body.attempt >= task.attempt or task.restore is None
        return isinstance(body, JobFailed) and body.attempt >= task.attempt

    async def _heartbeat(self, msg: Any, task: JobTask, attempt: asyncio.Task[Any],
                         finished: asyncio.Event, *, at_once: bool = False) -> None:
        """Tell the server the task is in progress; stop the attempt once its run is over.

        With ``at_once`` the first beat is immediate (the caller waited the first interval
        already). It ends when ``finished`` is set, not only when cancelled: on Python 3.11 a
        cancellation arriving while nats-py waits for a reply can be lost (CPython
        gh-86296), and a heartbeat that missed it must not live on.
        """
        while not finished.is_set():
            if not at_once:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(finished.wait(), self.ack_wait / 3)
            at_once = False
            if finished.is_set():
                return
            with contextlib.suppress(Exception):
                await msg.in_progress()
            with contextlib.suppress(Exception):
                if await self._obsolete(task) and not finished.is_set():
                    attempt.cancel()
                    return

    async def _place(self, task: JobTask) -> tuple[Connector, ExecutionLocation]:
        """The connector of the task's deployment and its location (deploying it if lazy).

        Raises:
            DeploymentError: the deployment is unknown here or cannot be brought up.
        """
        if self.deployments is None:
            if task.deployment != LOCAL_DEPLOYMENT:
                raise DeploymentError(f"this worker serves only {LOCAL_DEPLOYMENT}, not {task.deployment!r}",
                                      retryable=False)
            self.deployments = RunHere()
        connector = await self.deployments.get_connector(task.deployment)
        if connector is None:
            raise DeploymentError(f"no deployment named {task.deployment!r} in this process", retryable=False)
        if task.deployment == LOCAL_DEPLOYMENT or isinstance(self.deployments, RunHere):
            return connector, LOCAL_LOCATION
        key = (task.deployment, task.location)
        location = self._locations.get(key)
        if location is None:
            available = await connector.get_available_locations()
            if task.location not in available:
                raise DeploymentError(f"deployment {task.deployment!r} has no location {task.location!r} "
                                      f"(it offers {', '.join(sorted(available)) or 'none'})")
            location = self._locations[key] = available[task.location].location
        return connector, location

    def _file_defaults(self, task: JobTask, step: ExecuteStep) -> bool:
        """Whether a parameter of the step's process has a File or Directory default (per step)."""
        key = (task.run_id, task.step)
        found = self._defaults.get(key)
        if found is None:
            from streamflow.cwl.utils import plain

            if len(self._defaults) > 10_000:
                self._defaults.clear()
            params = plain(step.process).get("inputs") or []
            found = self._defaults[key] = any(
                has_files(p.get("default")) for p in params if isinstance(p, dict))
        return found

    def _remote_base(self, deployment: str) -> str:
        """The base working directory of jobs on a deployment's locations."""
        from streamflow.core.deployment import default_workdir

        configs = getattr(self.deployments, "configs", {})
        config = configs.get(deployment)
        return default_workdir(config) if config is not None else "/tmp/streamflow"

    async def _execute(self, task: JobTask, workdir: Path, delivery: int) -> JobCompleted | JobFailed:
        """Run one attempt; its result records the command line it ran, if any."""
        ran: list[str] = []
        result = await self._attempt(task, workdir, delivery, ran)
        return msgspec.structs.replace(result, command=ran) if ran else result

    async def _attempt(self, task: JobTask, workdir: Path, delivery: int, ran: list[str]) -> JobCompleted | JobFailed:
        from streamflow.cwl.utils import bus_safe
        from streamflow.secrets import revealing_command

        job, attempt = task.job, task.attempt
        try:
            graph = await self.graphs(task.run_id)
            step = graph.steps[task.step]
            if not isinstance(step, ExecuteStep):
                raise WorkflowDefinitionError(f"step {task.step} is not an execute step")
            outdir = workdir / "out"  # made with the attempt's directory (_new_workdir)
            tmpdir = workdir / "tmp"
            # Inputs produced on a machine that shares no filesystem with this one.
            await fetch_missing(self.log.js, task.inputs)
            validate = functools.partial(
                fill_and_validate_inputs, step.process, dict(task.inputs), requirements=step.requirements,
                hints=step.hints, base_dir=str(outdir), cwl_version=step.cwl_version,
                discover_secondary_files=False)
            # Files and directories are looked at on disk (off the loop); plain values are
            # only checked against their types: no thread hop for them.
            on_disk = has_files(task.inputs) or self._file_defaults(task, step)
            job_order = await asyncio.to_thread(validate) if on_disk else validate()
            sink = self.tool_output(task.run_id) if self.tool_output is not None else None
            if sink is not None:
                tool_output.set(sink)  # this attempt's own context
            connector, location = await self._place(task)
            remote_root = None if location.local else posixpath.join(
                self._remote_base(task.deployment), task.run_id, task.job, workdir.name)
            command = ConnectorCommand(
                connector, location, job_name=f"{task.run_id}-{job}", local_root=str(workdir),
                remote_root=remote_root, inputs=task.paths, output=sink,
                environment={"STREAMFLOW_HOSTS": ",".join(task.hostnames)} if task.hostnames else None)
            outputs = await execute_process(
                step.process, job_order, requirements=step.requirements, hints=step.hints,
                outdir=str(outdir), tmpdir=str(tmpdir), cores=task.cores, ram=task.memory or 1024,
                cwl_version=step.cwl_version, container=step.container if location.local else "none",
                run=recording(revealing_command(command), ran))  # secret inputs: the values, for the command only
            outputs = bus_safe(outputs)  # JSON numbers beyond 64 bits travel as doubles
            if not self.shared_fs:
                await publish_paths(self.log.js, outputs)
            return JobCompleted(outputs=outputs, job=job, attempt=attempt, delivery=delivery,
                                location_paths={str(outdir): posixpath.join(remote_root, "out")}
                                if remote_root is not None else {})
        except JobFailedError as exc:
            return JobFailed(error=str(exc), exit_code=exc.exit_code, retryable=exc.retryable,
                             error_type="JobFailedError", job=job, attempt=attempt, delivery=delivery)
        except UnsupportedRequirementError as exc:
            return JobFailed(error=str(exc), retryable=False, error_type="UnsupportedRequirementError", job=job, attempt=attempt, delivery=delivery)
        except (InputValidationError, WorkflowDefinitionError) as exc:
            return JobFailed(error=str(exc), retryable=False, error_type=type(exc).__name__, job=job, attempt=attempt, delivery=delivery)
        except StreamFlowError as exc:
            return JobFailed(error=str(exc), retryable=exc.retryable, error_type=type(exc).__name__, job=job, attempt=attempt, delivery=delivery)
        except Exception as exc:  # supervision boundary: any crash of the attempt is a JobFailed
            log.exception("job_crashed")
            return JobFailed(error=f"internal error: {exc!r}", retryable=False, error_type="InternalError", job=job, attempt=attempt, delivery=delivery)


def _first_try(task: JobTask, delivery: int) -> bool:
    """Whether a task is the first delivery of a job's first attempt in a run's first generation
    (nothing can be on the job's subject yet unless the task was queued twice)."""
    return delivery == 1 and task.attempt == 1 and task.generation == 0 and task.restore is None


def _new_workdir(base: str, task: JobTask, delivery: int) -> Path:
    """A fresh private directory for this delivery of the task, with its empty ``out`` and
    ``tmp`` (blocking: run in a thread, not on the loop)."""
    workdir = fresh_attempt_dir(base, task.run_id, task.job, attempt=task.attempt, generation=task.generation,
                                delivery=delivery)
    for name in ("out", "tmp"):
        os.mkdir(workdir / name, 0o700)  # in a directory just created: nothing can be there yet
    return workdir


async def _refused(task: JobTask, delivery: int, exc: UnsafeDirectoryError) -> JobFailed:
    """The result of an attempt whose directory could not be made safely."""
    return JobFailed(error=str(exc), retryable=False, error_type="UnsafeDirectoryError", job=task.job,
                     attempt=task.attempt, delivery=delivery)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class RunHere:
    """Jobs on this machine through the local connector, whatever their deployment: an agent's
    workers (the agent runs *at* the deployment) and a worker given no deployment manager
    (which serves only ``__LOCAL__``)."""

    def __init__(self) -> None:
        from streamflow.connectors.local import LocalConnector

        self.connector: Connector = LocalConnector(LOCAL_DEPLOYMENT, os.getcwd())

    async def get_connector(self, deployment_name: str) -> Connector | None:
        return self.connector
