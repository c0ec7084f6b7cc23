"""Prometheus metrics fed from the event stream, served on ``127.0.0.1:<port>/metrics``.

:class:`MetricsExporter` follows every run's events on the log and keeps, in its own
registry (never the process-global one):

- ``streamflow_events_total{type}``: events seen on the log, by event type;
- ``streamflow_log_messages``: messages stored in the event stream (from stream info);
- ``streamflow_jobs{state}``: jobs by state (waiting, running, completed, failed) over
  every run in the log, as each run's projection (:class:`events.projections.RunSummary`)
  has them (a reused job is completed, a rolled-back one waits again);
- ``streamflow_runs{status}``: runs by status (SUBMITTED, RUNNING, COMPLETED, FAILED,
  CANCELLED);
- ``streamflow_bus_rtt_seconds``: the bus round-trip time, measured every
  ``probe_interval`` seconds by timing a ``flush`` (a PING/PONG with the server);
- ``streamflow_last_event_timestamp_seconds``: server time of the last event seen.

:func:`serve_metrics` runs one exporter until an event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter as Tally
from typing import TYPE_CHECKING, Any

import nats.errors
import nats.js.errors
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from events.codec import event_type
from events.log import EVENTS_STREAM
from events.projections import JOB_STATES, RUN_STATUSES, RunSummary

if TYPE_CHECKING:
    from types import TracebackType

    from nats.aio.client import Client as NATS

    from events.log import EventLog, Record

__all__ = ["JOB_STATES", "RUN_STATUSES", "MetricsExporter", "serve_metrics"]



class MetricsExporter:
    """Folds the event stream into Prometheus metrics and serves them over HTTP.

    Args:
        nc: a connected NATS client (probed for the round-trip time).
        log: the event log to follow.
        port: TCP port on 127.0.0.1; 0 picks a free one (see :attr:`port` once started).
        probe_interval: seconds between round-trip probes and stream-info reads.
    """

    def __init__(self, nc: NATS, log: EventLog, port: int = 0, *, probe_interval: float = 5.0) -> None:
        self.nc = nc
        self.log = log
        self.port = port
        self.probe_interval = probe_interval
        self.registry = CollectorRegistry(auto_describe=True)
        self.events = Counter("streamflow_events", "Events seen on the event log, by type",
                              ["type"], registry=self.registry)
        self.log_messages = Gauge("streamflow_log_messages", "Messages stored in the event stream",
                                  registry=self.registry)
        self.jobs = Gauge("streamflow_jobs", "Jobs by state, over every run", ["state"], registry=self.registry)
        self.runs = Gauge("streamflow_runs", "Runs by status", ["status"], registry=self.registry)
        self.rtt = Gauge("streamflow_bus_rtt_seconds", "Bus round-trip time (a flush to the server)",
                         registry=self.registry)
        self.last_event = Gauge("streamflow_last_event_timestamp_seconds", "Server time of the last event seen",
                                registry=self.registry)
        for state in JOB_STATES:
            self.jobs.labels(state).set(0)
        for status in RUN_STATUSES:
            self.runs.labels(status).set(0)
        self._job_state: dict[tuple[str, str], str] = {}
        self._run_status: dict[str, str] = {}
        self._summaries: dict[str, RunSummary] = {}
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # --- the fold -------------------------------------------------------------------

    def _move(self, table: dict[Any, str], gauge: Gauge, key: Any, new: str) -> None:
        old = table.get(key)
        if old == new:
            return
        if old is not None:
            gauge.labels(old).dec()
        table[key] = new
        gauge.labels(new).inc()

    def apply(self, record: Record) -> None:
        """Fold one event into the metrics (job and run states come from the run's projection)."""
        body = record.body
        run_id = record.envelope.run_id
        self.events.labels(event_type(body)).inc()
        if record.time:
            self.last_event.set(record.time)
        summary = self._summaries.get(run_id)
        if summary is None:
            summary = self._summaries[run_id] = RunSummary(run_id=run_id)
        summary.apply(record)
        if summary.status in RUN_STATUSES:
            self._move(self._run_status, self.runs, run_id, summary.status)
        job = getattr(body, "job", None)
        info = summary.jobs.get(job) if isinstance(job, str) else None
        if info is not None:
            self._move(self._job_state, self.jobs, (run_id, info.job), info.state)

    def snapshot(self) -> dict[str, Any]:
        """The current values (for tests and debugging)."""
        return {
            "jobs": dict(Tally(self._job_state.values())),
            "runs": dict(Tally(self._run_status.values())),
        }

    # --- the loops ------------------------------------------------------------------

    async def probe(self) -> float:
        """Measure the bus round-trip time once (and refresh the stream size)."""
        started = time.perf_counter()
        await self.nc.flush(timeout=5)
        elapsed = time.perf_counter() - started
        self.rtt.set(elapsed)
        info = await self.log.js.stream_info(EVENTS_STREAM)
        self.log_messages.set(info.state.messages)
        return elapsed

    async def follow(self) -> None:
        """Fold every event of the log, then keep following it (until cancelled)."""
        async for record in self.log.read_all(follow=True):
            self.apply(record)

    async def probe_loop(self) -> None:
        """Probe the bus every ``probe_interval`` seconds (until cancelled)."""
        while True:
            # A failed probe (a reconnecting bus) is retried later: it must not stop the exporter.
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error, TimeoutError):
                await self.probe()
            await asyncio.sleep(self.probe_interval)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the log and probe the bus until ``stop`` is set."""
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self.follow()), tg.create_task(self.probe_loop())]
            await stop.wait()
            for task in tasks:
                task.cancel()

    # --- lifecycle ------------------------------------------------------------------

    async def start(self) -> None:
        """Start the HTTP server (``/metrics``) on 127.0.0.1."""
        server, thread = await asyncio.to_thread(start_http_server, self.port, "127.0.0.1", self.registry)
        self._server, self._thread = server, thread
        self.port = int(server.server_port)

    async def close(self) -> None:
        """Stop the HTTP server. Idempotent."""
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            await asyncio.to_thread(server.shutdown)
            server.server_close()
        if thread is not None:
            await asyncio.to_thread(thread.join, 5)

    async def __aenter__(self) -> MetricsExporter:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


async def serve_metrics(nc: NATS, log: EventLog, port: int, stop: asyncio.Event) -> None:
    """Serve Prometheus metrics on ``127.0.0.1:port`` until ``stop`` is set.

    Args:
        nc: a connected NATS client.
        log: the event log.
        port: the TCP port.
        stop: set it to stop serving.
    """
    async with MetricsExporter(nc, log, port) as exporter:
        await exporter.run(stop)
