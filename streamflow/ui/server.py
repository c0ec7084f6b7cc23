"""The ASGI application of ``streamflow ui`` (Starlette, served by uvicorn).

Routes (JSON unless said otherwise; times are seconds since the epoch; see docs/ui.md):
``/healthz``; ``/api/session``; ``/api/runs`` and ``/api/runs/stream`` (SSE); per run
``/api/runs/{run}``, ``/graph``, ``/timeline``, ``/jobs``, ``/jobs/{job}``, ``/events``,
``/stream`` (SSE), and ``POST /cancel``, ``/resume``, ``/rerun``; the single-page app at
``/`` and its files at ``/static/*`` (plotly.js from the ``plotly`` package). Access control
is :class:`streamflow.ui.auth.AuthMiddleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from events.log import EventLog, valid_id
from streamflow import __version__
from streamflow.bus import BusOptions, open_bus, streamflow_home
from streamflow.errors import RunNotFoundError
from streamflow.runs import control
from streamflow.runs.events import read_page, record_to_json, resolve_filter
from streamflow.ui import api
from streamflow.ui.auth import Auth, AuthMiddleware
from streamflow.ui.index import RunsIndex
from streamflow.ui.live import RunFeed
from streamflow.ui.runcache import RunCache

__all__ = ["UIOptions", "UIState", "build_app", "plotly_js", "serve"]

log = structlog.get_logger("streamflow.ui")

STATIC = Path(__file__).parent / "static"
KEEPALIVE = 15.0
CURSORS = 4096


def plotly_js() -> Path:
    """plotly.min.js of the installed ``plotly`` package (never copied into this one)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the plotly package is not installed")
    return Path(spec.origin).parent / "package_data" / "plotly.min.js"


@dataclass
class UIOptions:
    """How to serve.

    Attributes:
        host: the address to bind (loopback by default).
        port: the port (0: a free one).
        bus: the bus to read and act on.
        auth: the token and what is derived from it.
        idle: seconds a run feed without subscribers lives after its last use.
        interval: seconds between coalesced updates of a feed.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    bus: BusOptions = field(default_factory=BusOptions.from_env)
    auth: Auth = field(default_factory=Auth)
    idle: float = 60.0
    interval: float = 0.5


class UIState:
    """What the routes share: the log, the runs index, the open run feeds, started processes."""

    def __init__(self, log_: EventLog, options: UIOptions) -> None:
        self.log = log_
        self.options = options
        self.index = self._new_index()
        self.feeds: dict[str, RunFeed] = {}
        self.children: set[asyncio.Task[int]] = set()
        self.log_dir = streamflow_home() / "ui"
        self._janitor: asyncio.Task[None] | None = None
        self._graph_lock = asyncio.Lock()
        self.cursors: OrderedDict[tuple[str, int], int] = OrderedDict()
        """``(run, n) -> stream sequence`` of the last event of the pages served (the next
        page's start), the newest :data:`CURSORS`."""

    def remember(self, run_id: str, n: int, stream_seq: int) -> None:
        """Note where the run's event ``n`` is (the next page of events starts after it)."""
        self.cursors[run_id, n] = stream_seq
        self.cursors.move_to_end((run_id, n))
        while len(self.cursors) > CURSORS:
            self.cursors.popitem(last=False)

    def _new_index(self) -> RunsIndex:
        return RunsIndex(self.log, self.options.interval, cache=RunCache(self.log.js, replicas=self.log.replicas))

    def start(self) -> None:
        self.index.start()
        self._janitor = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
        for feed in [self.index, *self.feeds.values()]:
            await feed.stop()
        self.feeds.clear()

    async def _sweep(self) -> None:
        """Stop the feeds nobody watched for ``idle`` seconds."""
        while True:
            await asyncio.sleep(min(10.0, self.options.idle / 2))
            now = time.monotonic()
            if self.index.failed:  # its consumer died (the bus was gone too long): start over
                log.warning("ui: the runs index stopped; restarting it")
                await self.index.stop()
                self.index = self._new_index()
                self.index.start()
            for run_id, feed in list(self.feeds.items()):
                if not feed.subscribers and now - feed.last_used > self.options.idle:
                    del self.feeds[run_id]
                    await feed.stop()

    async def feed(self, run_id: str) -> RunFeed:
        """The run's feed, started (and caught up) if needed.

        Raises:
            ValueError: an invalid run id.
            RunNotFoundError: no such run.
        """
        if not valid_id(run_id):
            raise ValueError(f"invalid run id {run_id[:140]!r}")
        feed = self.feeds.get(run_id)
        if feed is None or feed.failed:
            if not await self.log.exists(run_id):
                raise RunNotFoundError(f"no run {run_id!r}")
            feed = self.feeds.get(run_id)
            if feed is None or feed.failed:
                feed = self.feeds[run_id] = RunFeed(self.log, run_id, self.options.interval)
                feed.start()
        await feed.wait_ready()
        return feed

    async def graph(self, feed: RunFeed) -> Any:
        """The run's translated workflow graph (None when its document cannot be loaded)."""
        async with self._graph_lock:
            if feed.graph is None:
                submitted = feed.fold.submitted
                graph = None
                if submitted is not None:
                    from streamflow.cli.engine import prepare_rerun

                    try:
                        graph = (await asyncio.to_thread(prepare_rerun, submitted)).graph
                    except Exception as exc:
                        log.warning("ui: workflow not loaded", run=feed.run_id, error=str(exc))
                feed.graph = {"graph": graph}
            return feed.graph["graph"]

    def reap(self, proc: asyncio.subprocess.Process) -> None:
        """Wait for a started process in the background (no zombies)."""
        task = asyncio.create_task(proc.wait())
        self.children.add(task)
        task.add_done_callback(self.children.discard)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, default=str), status_code=status, media_type="application/json")


def _error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


def _failure(exc: RunNotFoundError | ValueError | TimeoutError, what: str = "the run's events") -> Response:
    """The answer to a request that failed reading the log: 404 no such run, 503 too slow, 400 bad input."""
    if isinstance(exc, RunNotFoundError):
        return _error(str(exc), 404)
    if isinstance(exc, TimeoutError):
        return _error(f"{what} could not be read in time", 503)
    return _error(str(exc), 400)


def _int(request: Request, name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, not {raw[:40]!r}") from None
    return max(lo, min(hi, value) if hi is not None else value)


def _sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


def build_app(state: UIState) -> Starlette:
    """The application, with its middleware."""

    async def run_route(request: Request, view: Callable[[RunFeed], Any]) -> Response:
        try:
            feed = await state.feed(request.path_params["run"])
        except (ValueError, RunNotFoundError, TimeoutError) as exc:
            return _failure(exc)
        result = view(feed)
        if asyncio.iscoroutine(result):
            result = await result
        return result if isinstance(result, Response) else _json(result)

    async def index(request: Request) -> Response:
        page = STATIC / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse("<!doctype html><title>StreamFlow</title><p>The UI's page is missing.</p>")

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def plotly(request: Request) -> Response:
        return FileResponse(plotly_js(), media_type="text/javascript")

    async def session(request: Request) -> Response:
        return _json({"csrf": state.options.auth.csrf(), "version": __version__})

    async def runs(request: Request) -> Response:
        try:
            await state.index.wait_ready()
        except TimeoutError as exc:
            return _failure(exc, "the event log")
        return _json({"runs": state.index.rows(request.query_params.get("status"), request.query_params.get("q"))})

    async def stream(request: Request, feed: RunsIndex | RunFeed, first: list[tuple[str, Any]]) -> Response:
        sub = feed.subscribe()

        async def body() -> AsyncIterator[str]:
            try:
                for item in first:
                    yield _sse(*item)
                    if item[0] == "end":
                        return
                while True:
                    try:
                        pushed = await asyncio.wait_for(sub.queue.get(), KEEPALIVE)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if pushed is None:
                        return
                    yield _sse(*pushed)
                    if pushed[0] == "end":
                        return
            finally:
                feed.unsubscribe(sub)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"cache-control": "no-store", "x-accel-buffering": "no"})

    async def runs_stream(request: Request) -> Response:
        try:
            await state.index.wait_ready()
        except TimeoutError as exc:
            return _failure(exc, "the event log")
        return await stream(request, state.index, [("runs", {"runs": state.index.rows()})])

    async def run_stream(request: Request) -> Response:
        def _open(feed: RunFeed) -> Any:
            first: list[tuple[str, Any]] = [("snapshot", feed.snapshot())]
            if feed.fold.summary.finished:
                first.append(("end", {"status": feed.fold.summary.status}))
            return stream(request, feed, first)

        return await run_route(request, _open)

    async def run_detail(request: Request) -> Response:
        return await run_route(request, lambda feed: api.run_detail(feed.fold))

    async def timeline(request: Request) -> Response:
        lane = "step" if request.query_params.get("by") == "step" else "location"
        return await run_route(request, lambda feed: api.timeline_view(feed.fold, lane=lane))

    async def graph(request: Request) -> Response:
        async def _view(feed: RunFeed) -> Any:
            return api.graph_view(await state.graph(feed), feed.fold.summary.steps)

        return await run_route(request, _view)

    async def jobs(request: Request) -> Response:
        try:
            offset = _int(request, "offset", 0)
            limit = _int(request, "limit", 100, 1, 500)
        except ValueError as exc:
            return _error(str(exc), 400)
        q = request.query_params
        return await run_route(request, lambda feed: api.job_rows(
            feed.fold, state=q.get("state") or None, step=q.get("step") or None, text=q.get("q") or None,
            offset=offset, limit=limit))

    async def job(request: Request) -> Response:
        job_id = request.path_params["job"]

        async def _view(feed: RunFeed) -> Any:
            info = feed.fold.summary.jobs.get(job_id)
            if info is None:
                return _error(f"run {feed.run_id} has no job {job_id[:140]!r}", 404)
            graph = await state.graph(feed)
            step_def = graph.steps.get(info.step) if graph is not None else None
            return await asyncio.to_thread(api.job_detail, feed.fold, job_id, step_def)

        return await run_route(request, _view)

    async def events(request: Request) -> Response:
        run_id = request.path_params["run"]
        try:
            since = _int(request, "since", 0)
            limit = _int(request, "limit", 500, 1, 5000)
        except ValueError as exc:
            return _error(str(exc), 400)
        if not valid_id(run_id):
            return _error(f"invalid run id {run_id[:140]!r}", 400)
        try:
            keep = await resolve_filter(state.log, run_id, types=request.query_params.getlist("type"),
                                        step=request.query_params.get("step") or None, since=since)
            if since and (run_id, since) in state.cursors:  # the next page of one served
                start = (since, state.cursors[run_id, since])
            elif since:  # the run's feed knows where each of its events is
                start = (await state.feed(run_id)).position(since)
            elif await state.log.exists(run_id):
                start = (0, 0)
            else:
                raise RunNotFoundError(f"no run {run_id!r}")
            page = await read_page(state.log, run_id, keep, limit=limit, start=start)
        except (ValueError, RunNotFoundError, TimeoutError) as exc:
            return _failure(exc)
        if page.last_stream_seq:
            state.remember(run_id, page.next_since, page.last_stream_seq)
        return _json({"events": [record_to_json(r) for r in page.records], "next_since": page.next_since})

    async def _body(request: Request) -> dict[str, Any]:
        with contextlib.suppress(Exception):
            data = await request.json()
            if isinstance(data, dict):
                return data
        return {}

    def _action(result: control.ActionResult, **extra: Any) -> Response:
        status = 200 if result.ok else (404 if "no run" in result.message else 400 if result.code == 2 else 409)
        return _json({"ok": result.ok, "message": result.message, **extra}, status)

    async def cancel(request: Request) -> Response:
        reason = str((await _body(request)).get("reason") or "cancelled from the web UI")[:500]
        return _action(await control.cancel_run(state.log, request.path_params["run"], reason))

    async def resume(request: Request) -> Response:
        result, proc = await control.start_resume(state.log, request.path_params["run"], state.options.bus,
                                                  state.log_dir)
        if proc is not None:
            state.reap(proc)
        return _action(result, pid=result.pid)

    async def rerun(request: Request) -> Response:
        result, proc = await control.start_rerun(state.log, request.path_params["run"], state.options.bus,
                                                 state.log_dir)
        if proc is not None:
            state.reap(proc)
        return _action(result, run_id=result.run_id, pid=result.pid)

    async def http_error(request: Request, exc: Exception) -> Response:
        status = int(getattr(exc, "status_code", 500))
        if status == 405:
            return _error(f"method {request.method} not allowed on {request.url.path[:200]}", 405)
        return _error(f"no route {request.url.path[:200]}", status)

    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/static/vendor/plotly.min.js", plotly),
        Mount("/static", app=StaticFiles(directory=STATIC, check_dir=False), name="static"),
        Route("/api/session", session),
        Route("/api/runs", runs),
        Route("/api/runs/stream", runs_stream),
        Route("/api/runs/{run}", run_detail),
        Route("/api/runs/{run}/stream", run_stream),
        Route("/api/runs/{run}/graph", graph),
        Route("/api/runs/{run}/timeline", timeline),
        Route("/api/runs/{run}/jobs", jobs),
        Route("/api/runs/{run}/jobs/{job}", job),
        Route("/api/runs/{run}/events", events),
        Route("/api/runs/{run}/cancel", cancel, methods=["POST"]),
        Route("/api/runs/{run}/resume", resume, methods=["POST"]),
        Route("/api/runs/{run}/rerun", rerun, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={404: http_error, 405: http_error})
    app.add_middleware(AuthMiddleware, auth=state.options.auth)
    return app


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


async def serve(options: UIOptions, announce: Callable[[str], None]) -> None:
    """Serve until interrupted; ``announce`` gets the URL (with the token) once listening.

    Raises:
        OSError: the address cannot be bound.
    """
    import uvicorn

    sock = _bind(options.host, options.port)
    port = sock.getsockname()[1]
    options.auth.bind(options.host, port)
    async with open_bus(options.bus) as nc:
        log_ = EventLog(nc)
        await log_.setup()
        state = UIState(log_, options)
        state.start()
        config = uvicorn.Config(build_app(state), log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=2, proxy_headers=False, server_header=False)
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers a flag only
                await asyncio.sleep(0.02)
            if server.started:
                shown = f"[{options.host}]" if ":" in options.host else options.host
                announce(f"http://{shown}:{port}/?token={options.auth.token}")
            await task
        finally:
            if not task.done():
                server.should_exit = True
                with contextlib.suppress(BaseException):
                    await task
            await state.stop()
            sock.close()
