"""The Prometheus endpoint fed from the event stream."""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.log import EventLog
from streamflow.cli.metrics import MetricsExporter, serve_metrics
from tests.streamflow.cli.conftest import FinishedRun


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def _eventually(port: int, check: object, deadline: float = 15.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    assert callable(check)
    end = time.monotonic() + deadline
    while True:
        try:
            samples = await asyncio.to_thread(_scrape, port)
        except OSError:  # not listening yet
            samples = {}
        if check(samples):
            return samples
        assert time.monotonic() < end, samples
        await asyncio.sleep(0.1)


async def test_metrics_count_the_jobs_runs_and_events_of_a_finished_run(
        finished_run: FinishedRun, event_log: EventLog) -> None:
    """After a three-job run, the endpoint shows its jobs completed, its run completed and its events."""
    port = _free_port()
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(serve_metrics(event_log.nc, event_log, port, stop))
        samples = await _eventually(port, lambda s: s.get(("streamflow_runs", (("status", "COMPLETED"),)), 0) >= 1
                                    and s.get(("streamflow_bus_rtt_seconds", ()), 0) > 0)
        stop.set()
    assert samples[("streamflow_jobs", (("state", "completed"),))] >= 3
    assert samples[("streamflow_events_total", (("type", "JobCompleted"),))] >= 3
    assert samples[("streamflow_events_total", (("type", "RunSubmitted"),))] >= 1
    assert samples[("streamflow_log_messages", ())] >= 39
    assert 0 < samples[("streamflow_bus_rtt_seconds", ())] < 5


async def test_metrics_fold_tracks_one_run_exactly(finished_run: FinishedRun, event_log: EventLog) -> None:
    """Folding exactly one run's events leaves its three jobs completed and the run COMPLETED."""
    exporter = MetricsExporter(event_log.nc, event_log)
    async for record in event_log.read(finished_run.run_id):
        exporter.apply(record)
    assert exporter.snapshot() == {"jobs": {"completed": 3}, "runs": {"COMPLETED": 1}}
    assert await exporter.probe() > 0


async def test_metrics_exporter_serves_on_a_chosen_free_port_and_stops(event_log: EventLog) -> None:
    """With port 0 the exporter picks a free port, serves /metrics there and frees it on close."""
    async with MetricsExporter(event_log.nc, event_log, 0) as exporter:
        assert exporter.port > 0
        samples = await asyncio.to_thread(_scrape, exporter.port)
        assert ("streamflow_jobs", (("state", "running"),)) in samples
        port = exporter.port
    with pytest.raises(ConnectionRefusedError):  # nothing listens there any more
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
