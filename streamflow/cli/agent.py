"""``streamflow agent``: a long-running host of executor workers (the command's parser is
:mod:`streamflow.cli.commands.agent`, kept free of these imports: every ``streamflow``
command line builds it).

An agent connects to the bus (``--nats URLS``, or the shared embedded server of this
``STREAMFLOW_HOME``), binds one :class:`actors.worker.Worker` per deployment (default
``__LOCAL__``) to that deployment's durable pull consumer, and runs job tasks until it is
told to stop. More agents mean more pollers on the same consumers: there is no
registration and no rebalancing. ``streamflow run --workers 0`` then runs no job itself.

A worker finds a run's graph by rebuilding it from the run's ``RunSubmitted`` event
(:func:`streamflow.cli.engine.load_graph`), so for now an agent must see the workflow
document and the job files at the paths recorded there (same machine or shared
filesystem).

Shutdown is staged: the first SIGTERM or SIGINT *drains* (no new task is pulled, running
jobs finish and are recorded, then the agent exits 0); a second signal, or the end of
``--drain-timeout``, cancels the running jobs, whose tasks stay unacknowledged and are
redelivered to another agent after ``ack_wait``; the agent then exits 1.

Environment:
    STREAMFLOW_ACK_WAIT: seconds before the server redelivers a task whose worker went
        silent (default: ``actors.worker.ACK_WAIT``, 10 s); workers heartbeat every third
        of it. It is applied to each deployment's consumer when the agent starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog

from actors import worker as worker_module
from actors.worker import RunHere, Worker
from events.agents import ANNOUNCE_EVERY, AgentInfo, agent_key, agents_bucket
from events.backoff import Backoff
from events.log import EVENTS_STREAM, TASKS_STREAM, EventLog
from streamflow.errors import BusError
from streamflow.workflow.graph import WorkflowGraph

__all__ = ["Agent", "ack_wait_from_env", "run"]

log = structlog.get_logger("streamflow.agent")

EXIT_OK = 0
EXIT_FORCED = 1
EXIT_INVALID = 2


def ack_wait_from_env() -> float:
    """``$STREAMFLOW_ACK_WAIT`` in seconds (default: ``actors.worker.ACK_WAIT``).

    Raises:
        ValueError: the variable is not a positive number.
    """
    raw = os.environ.get("STREAMFLOW_ACK_WAIT", "").strip()
    if not raw:
        return worker_module.ACK_WAIT
    value = float(raw)
    if value <= 0:
        raise ValueError(f"STREAMFLOW_ACK_WAIT must be positive, got {raw!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Run the agent until it is stopped; return the exit code."""
    import logging

    from streamflow.cli.main import bus_options, configure_logging

    configure_logging(quiet=args.quiet, debug=args.debug)
    if not args.quiet and not args.debug:
        # A daemon reports its lifecycle and its jobs: INFO by default, unlike one-shot commands.
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    deployments = list(dict.fromkeys(args.deployments or ["__LOCAL__"]))
    if args.workers < 1:
        print("streamflow: agent: --workers must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    try:
        ack_wait = ack_wait_from_env()
    except ValueError as exc:
        print(f"streamflow: agent: {exc}", file=sys.stderr)
        return EXIT_INVALID
    from streamflow.cli.engine import _default_workdir

    _warm_up()
    agent = Agent(
        bus=bus_options(args), deployments=deployments, workers=args.workers,
        workdir=os.path.abspath(args.workdir or _default_workdir()),
        name=args.name or f"{socket.gethostname()}/{os.getpid()}",
        ack_wait=ack_wait, drain_timeout=args.drain_timeout, shared_fs=not args.no_shared_fs,
    )
    try:
        return asyncio.run(agent.main())
    except BusError as exc:
        print(f"streamflow: bus error: {exc}", file=sys.stderr)
        return EXIT_FORCED


def _redact(url: str) -> str:
    """``url`` without its user info (``nats://user:pass@host`` or ``nats://token@host``)."""
    scheme, sep, rest = url.rpartition("://")
    return f"{scheme}{sep}{rest.rsplit('@', 1)[-1]}"


def _warm_up() -> None:
    """Import the CWL layer now: a first job must not block the loop (and its heartbeats) on imports."""
    # Importing cwl-utils takes seconds on a cold start; during a job, that would starve the
    # in_progress heartbeats and get the task redelivered when ack_wait is short.
    import streamflow.cwl.inputs
    import streamflow.cwl.loader
    import streamflow.cwl.tool
    import streamflow.cwl.translator  # noqa: F401


_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    BusError,
)


class Agent:
    """Hosts one worker per deployment on one bus connection.

    Args:
        bus: how to reach the bus.
        deployments: the deployments whose tasks it runs.
        workers: concurrency of each deployment's worker.
        workdir: base directory of job working directories.
        name: the agent's id (``JobStarted.worker``).
        ack_wait: the consumers' ack wait, seconds.
        drain_timeout: seconds to wait for running jobs on a drain (0: no limit).
    """

    def __init__(self, *, bus: Any, deployments: list[str], workers: int, workdir: str, name: str,
                 ack_wait: float, drain_timeout: float = 0.0, shared_fs: bool = True) -> None:
        self.shared_fs = shared_fs
        self.bus = bus
        self.deployments = deployments
        self.workers = workers
        self.workdir = workdir
        self.name = name
        self.ack_wait = ack_wait
        self.drain_timeout = drain_timeout
        self.stop = asyncio.Event()
        self.forced = asyncio.Event()
        self._pool: list[Worker] = []

    def _on_signal(self, signame: str) -> None:
        if not self.stop.is_set():
            log.info("agent_draining", signal=signame, running=sum(w.running for w in self._pool))
            self.stop.set()
        else:
            log.warning("agent_forced_stop", signal=signame, running=sum(w.running for w in self._pool))
            self.forced.set()

    async def main(self) -> int:
        """Connect, run the workers until a signal, drain, and return the exit code."""
        from streamflow.bus import open_bus
        from streamflow.cli.engine import load_graph

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig.name)
        self.bus.name = f"streamflow-agent:{self.name}"
        with structlog.contextvars.bound_contextvars(actor=f"agent:{self.name}"):
            async with open_bus(self.bus) as nc:
                log_ = EventLog(nc)
                if not await self._wait_for_streams(log_):
                    log.info("agent_stopped", completed=0)
                    return EXIT_OK

                async def _graphs(run_id: str) -> WorkflowGraph:
                    return await load_graph(log_, run_id)

                here = RunHere()
                self._pool = [
                    Worker(log_, deployment, _graphs, workdir=self.workdir, concurrency=self.workers,
                           name=self.name, ack_wait=self.ack_wait, shared_fs=self.shared_fs, deployments=here)
                    for deployment in self.deployments
                ]
                log.info("agent_started", deployments=self.deployments, workers=self.workers,
                         workdir=self.workdir, ack_wait=self.ack_wait, servers=[_redact(u) for u in self.bus.servers] or "embedded")
                announcing = asyncio.create_task(self._announce(log_))
                try:
                    forced = await self._run_pool()
                except ExceptionGroup as group:  # a worker died (bus gone...): its tasks get redelivered
                    log.error("agent_crashed", errors=[repr(e) for e in group.exceptions])
                    return EXIT_FORCED
                finally:
                    announcing.cancel()
                    with contextlib.suppress(BaseException):
                        await announcing
                    await self._withdraw(log_)
                completed = sum(w.completed for w in self._pool)
                log.info("agent_stopped", completed=completed, forced=forced)
                return EXIT_FORCED if forced else EXIT_OK

    def _announcements(self) -> list[AgentInfo]:
        from actors.scheduler import local_capacity

        here = local_capacity()
        return [AgentInfo(deployment=deployment, name=self.name, hostname=socket.gethostname(), cores=here.cores,
                          memory=here.memory, workers=self.workers, shared_fs=self.shared_fs)
                for deployment in self.deployments]

    async def _announce(self, log_: EventLog) -> None:
        """Keep this agent's announcements fresh (``events/agents.py``) until cancelled."""
        warned = False
        while True:
            try:
                bucket = await agents_bucket(log_.js)
                if bucket is not None:
                    for info in self._announcements():
                        await bucket.put(agent_key(info.deployment, info.name), msgspec.json.encode(info))
            except Exception as exc:  # best effort: without the right to announce, jobs still run
                if not warned:
                    log.warning("agent_announce_failed", error=str(exc))
                    warned = True
            await asyncio.sleep(ANNOUNCE_EVERY)

    async def _withdraw(self, log_: EventLog) -> None:
        with contextlib.suppress(Exception):
            bucket = await agents_bucket(log_.js)
            if bucket is not None:
                for info in self._announcements():
                    await bucket.delete(agent_key(info.deployment, info.name))

    async def _wait_for_streams(self, log_: EventLog) -> bool:
        """Wait until the log's streams exist (a run creates them); False if stopped first."""
        # An agent never creates streams: that needs rights it should not have, and only
        # the submitter knows the replication the cluster wants.
        announced = False
        while not self.stop.is_set():
            try:
                await log_.js.stream_info(TASKS_STREAM)
                await log_.js.stream_info(EVENTS_STREAM)
                return True
            except nats.js.errors.NotFoundError:
                if not announced:
                    log.info("agent_waiting_for_streams", streams=[EVENTS_STREAM, TASKS_STREAM])
                    announced = True
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError,
                    nats.js.errors.ServiceUnavailableError) as exc:
                log.warning("agent_jetstream_unavailable", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await self.stop.wait()
        return False

    async def _supervise(self, worker: Worker) -> None:
        """Run a worker until the drain; restart it after a transient bus error.

        During a leader election a pull request can fail with 503 (no consumer leader) or get
        no responders; ``Worker.run`` lets that escape, cancelling its running jobs (their tasks
        are redelivered after ``ack_wait``). The agent binds the consumer again and carries on.
        """
        backoff = Backoff(initial=0.5, maximum=5.0)
        while True:
            try:
                await worker.run(self.stop)
                return
            except* _TRANSIENT as group:
                log.warning("worker_restarting", deployment=worker.deployment,
                            errors=[repr(e) for e in group.exceptions], delay=backoff.delay)
            if self.stop.is_set():
                return
            await backoff.wait(self.stop)

    async def _run_pool(self) -> bool:
        """Run every worker until drained; return True when the drain was cut short."""
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as tg:
            pending = {tg.create_task(self._supervise(w)) for w in self._pool}
            await self.stop.wait()
            forced = tg.create_task(self.forced.wait())
            deadline = loop.time() + self.drain_timeout if self.drain_timeout > 0 else None
            while pending and not forced.done():
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, _ = await asyncio.wait({*pending, forced}, timeout=timeout,
                                             return_when=asyncio.FIRST_COMPLETED)
                pending -= done
                if not done:  # the drain deadline passed
                    break
            forced.cancel()
            if pending:
                log.warning("agent_cancelling_jobs", running=sum(w.running for w in self._pool))
                for task in pending:
                    task.cancel()
        return bool(pending)
