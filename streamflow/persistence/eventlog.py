"""``EventLogDatabase``: the :class:`~streamflow.core.persistence.Database` over the event log.

The log *is* the database. This class answers StreamFlow's ``Database`` queries from the
facts the actors already record, and stores the few entities they do not record in a
JetStream KV bucket of the same server.

Read side (projections folded from ``SF_EVENTS``)
    * **workflow** = a run. Its id is the stream sequence of the run's ``RunSubmitted``;
      name, params, status and start/end times come from the ``sf.ev.<run>.wf`` events.
    * **step** / **port** = the entries of ``RunSubmitted.steps`` / ``.ports``. Their ids
      are derived deterministically: ``(workflow id << 20) | (index + 1)``, the index being
      the entry's position in ``RunSubmitted`` (steps and ports are separate id spaces).
      Statuses come from ``JobRequested``/``StepFailed``/``StepTerminated``
      and ``TokenEmitted``/``PortTerminated``.
    * **step↔port dependencies** come from the run's dataflow graph, rebuilt by the
      (deterministic) translation of the document named in ``RunSubmitted``, as every actor
      host does. When the document cannot be read any more, they fall back to what the log
      shows: a step's outputs are the ports it emitted tokens on, its inputs the ports of the
      tokens those were computed from.
    * **token** = a ``TokenEmitted`` event; its id is the event's stream sequence.
    * **provenance**: ``TokenEmitted.inputs`` lists the event ids of the tokens a token was
      computed from; they are mapped to stream sequences (:meth:`get_dependees`,
      :meth:`get_dependers`).
    * **execution** = one attempt of a job: its id is the stream sequence of its
      ``JobStarted``; ``JobCompleted``/``JobFailed`` give status, end time and exit code.
      :meth:`get_reports` lists them per run as start/end rows.
    * **run summary** (:meth:`get_run_summary`, :meth:`get_run_summaries`): the one read
      model of a run's state, :class:`events.projections.RunSummary`, folded along with the
      rest; ``status``, ``list``, ``report``, ``prov``, metrics and progress read it.

    Each run is folded once into an in-memory view and brought up to date incrementally
    (from the last folded stream sequence) before every query; the run lifecycles used by
    the ``get_workflows_*`` queries are folded the same way from ``sf.ev.*.wf`` alone.
    Integer ids are resolved to their run with one direct get of the stream message.

Write side (KV bucket :data:`RECORDS_BUCKET`, ``sf_db``)
    Deployments, targets and filters (and any other kind through :meth:`add_record`) are
    stored as JSON under ``<kind>.<id>``. Ids are allocated per kind by compare-and-set on
    the counter key ``_seq.<kind>`` (created if absent), rows are created if absent and
    updated by compare-and-set on their revision, so concurrent writers never lose an
    update. The bucket lives in JetStream like the log, so the rows survive the process and
    are shared by every client of the bus.

    Workflows, steps, ports, tokens, provenance, dependencies and executions are facts the
    actors record as events, each aggregate with exactly one writer. Their ``add_*`` and
    ``update_*`` methods therefore raise :class:`ActorOwnedEntityError` instead of writing
    a second, conflicting version of them.

Construction
    ``EventLogDatabase(log=event_log)`` uses an open :class:`~events.log.EventLog` (the
    caller keeps owning its connection). Built by a
    :class:`~streamflow.core.context.StreamFlowContext` (``database: {type: default}`` in
    ``streamflow.yml``), it connects lazily on first use: to ``config.servers`` if given,
    otherwise as the CLI does (``STREAMFLOW_NATS_*`` variables, then the shared embedded
    server), and :meth:`close` releases that connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import msgspec
import nats.js.errors
import structlog
from nats.js import api
from nats.js.kv import KeyValue

from events.codec import decode, enc_hook
from events.log import EVENTS_STREAM, EventLog, Record, run_subject
from events.projections import RunSummary
from events.schema import (
    JobCompleted,
    JobFailed,
    JobRequested,
    JobStarted,
    PortTerminated,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
    RunSubmitted,
    StepFailed,
    StepTerminated,
    TokenEmitted,
)
from streamflow.core.persistence import Database, DependencyType, PersistentId, Row
from streamflow.core.workflow import Status
from streamflow.errors import EventLogError, RunNotFoundError, StreamFlowError

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.workflow.graph import WorkflowGraph

__all__ = ["RECORDS_BUCKET", "ActorOwnedEntityError", "EventLogDatabase"]

_log = structlog.get_logger("streamflow.persistence")

RECORDS_BUCKET = "sf_db"
"""The KV bucket holding the rows the actors do not record (deployments, targets, filters)."""

_INDEX_BITS = 20
_INDEX_MASK = (1 << _INDEX_BITS) - 1
_json_encoder = msgspec.json.Encoder(enc_hook=enc_hook)
_json_decoder = msgspec.json.Decoder(dict[str, Any])
_CAS_ATTEMPTS = 100


class ActorOwnedEntityError(StreamFlowError):
    """An entity recorded by the actors as events was written through the Database API."""


def _owned(what: str, how: str) -> ActorOwnedEntityError:
    return ActorOwnedEntityError(
        f"{what} are recorded by the actors as events ({how}); EventLogDatabase reads them from "
        "the event log and does not accept them from user code"
    )


def _ns(record: Record) -> int:
    """The time of a record in ns since the epoch (server time, else the writer's clock)."""
    return int(record.time * 1e9) if record.time else record.envelope.occurred_at


def _status(name: str) -> Status:
    try:
        return Status[name]
    except KeyError:
        return Status.COMPLETED


def _kind_from_name(name: str) -> str:
    """The step kind when the graph is not available (from the translator's naming)."""
    if "/__input__/" in name:
        return "input"
    if name.endswith("/__scatter__"):
        return "scatter"
    if "/__gather__/" in name:
        return "gather"
    return "step"


# --- the fold of one run -----------------------------------------------------------------------


@dataclass
class _Token:
    seq: int
    event_id: str
    port: str
    tag: str
    value: Any
    producer: str
    job: str | None
    inputs: list[str]
    time: int


@dataclass
class _Execution:
    seq: int
    job: str
    step: str
    tag: str
    attempt: int
    delivery: int
    worker: str
    workdir: str
    start: int
    status: Status = Status.RUNNING
    end: int | None = None
    exit_code: int | None = None
    error: str | None = None


@dataclass
class _RunView:
    """Everything the Database reads about one run, folded from its events (no I/O)."""

    run_id: str
    wf_seq: int = 0
    submitted: RunSubmitted | None = None
    status: Status = Status.WAITING
    submitted_at: int = 0
    start: int | None = None
    end: int | None = None
    last_seq: int = 0
    step_status: dict[str, Status] = field(default_factory=dict)
    port_status: dict[str, Status] = field(default_factory=dict)
    tokens: dict[int, _Token] = field(default_factory=dict)
    port_tokens: dict[str, list[int]] = field(default_factory=dict)
    by_event_id: dict[str, int] = field(default_factory=dict)
    dependers: dict[int, list[int]] = field(default_factory=dict)
    jobs: dict[str, JobRequested] = field(default_factory=dict)
    executions: dict[int, _Execution] = field(default_factory=dict)
    attempts: dict[tuple[str, int, int], int] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    summary: RunSummary = field(init=False)

    def __post_init__(self) -> None:
        self.summary = RunSummary(run_id=self.run_id)

    def apply(self, record: Record) -> None:
        """Fold one event of the run."""
        self.last_seq = record.stream_seq
        self.summary.apply(record)
        body = record.body
        when = _ns(record)
        if isinstance(body, RunSubmitted):
            self.wf_seq, self.submitted, self.submitted_at = record.stream_seq, body, when
        elif isinstance(body, RunStarted | RunResumed):
            self.status, self.end = Status.RUNNING, None
            if self.start is None:
                self.start = when
        elif isinstance(body, RunCompleted | RunFailed | RunCancelled):
            self.status = _RUN_END[type(body)]
            self.end = when
        elif isinstance(body, JobRequested):
            self.jobs[body.job] = body
            self.step_status.setdefault(body.step, Status.RUNNING)
        elif isinstance(body, StepFailed):
            self.step_status[record.agg_id or ""] = Status.FAILED
        elif isinstance(body, StepTerminated):
            self.step_status[record.agg_id or ""] = _status(body.status)
        elif isinstance(body, TokenEmitted):
            self._token(record, body, when)
        elif isinstance(body, PortTerminated):
            self.port_status[record.agg_id or ""] = _status(body.status)
        elif isinstance(body, JobStarted):
            request = self.jobs.get(body.job)
            self.executions[record.stream_seq] = _Execution(
                seq=record.stream_seq, job=body.job,
                step=request.step if request else body.job.rpartition("-")[0],
                tag=request.tag if request else "", attempt=body.attempt, delivery=body.delivery,
                worker=body.worker, workdir=body.workdir, start=when,
            )
            self.attempts[(body.job, body.attempt, body.delivery)] = record.stream_seq
        elif isinstance(body, JobCompleted | JobFailed):
            self._job_end(body, when)

    def _token(self, record: Record, body: TokenEmitted, when: int) -> None:
        port = record.agg_id or ""
        seq = record.stream_seq
        self.tokens[seq] = _Token(seq=seq, event_id=record.envelope.event_id, port=port, tag=body.tag,
                                  value=body.value, producer=body.producer, job=body.job,
                                  inputs=list(body.inputs), time=when)
        self.port_tokens.setdefault(port, []).append(seq)
        self.by_event_id[record.envelope.event_id] = seq
        self.port_status.setdefault(port, Status.RUNNING)
        for input_id in body.inputs:
            source = self.by_event_id.get(input_id)
            if source is not None:
                self.dependers.setdefault(source, []).append(seq)

    def _job_end(self, body: JobCompleted | JobFailed, when: int) -> None:
        seq = self.attempts.get((body.job, body.attempt, body.delivery))
        if seq is None:
            return
        execution = self.executions[seq]
        execution.end = when
        if isinstance(body, JobCompleted):
            execution.status, execution.exit_code = Status.COMPLETED, body.exit_code
        else:
            execution.status, execution.exit_code = Status.FAILED, body.exit_code
            execution.error = body.error

    def dependees(self, token: _Token) -> list[int]:
        """Stream sequences of the tokens ``token`` was computed from (known to this run)."""
        return [s for s in (self.by_event_id.get(i) for i in token.inputs) if s is not None]


_RUN_END: dict[type, Status] = {
    RunCompleted: Status.COMPLETED,
    RunFailed: Status.FAILED,
    RunCancelled: Status.CANCELLED,
}


@dataclass
class _Lifecycle:
    """The lifecycle of one run, folded from ``sf.ev.<run>.wf`` only."""

    run_id: str
    wf_seq: int
    submitted: RunSubmitted
    submitted_at: int
    status: Status = Status.WAITING
    start: int | None = None
    end: int | None = None
    summary: RunSummary | None = None

    def apply(self, record: Record) -> None:
        if self.summary is not None:
            self.summary.apply(record)
        body = record.body
        if isinstance(body, RunStarted | RunResumed):
            self.status, self.end = Status.RUNNING, None
            if self.start is None:
                self.start = _ns(record)
        elif isinstance(body, RunCompleted | RunFailed | RunCancelled):
            self.status, self.end = _RUN_END[type(body)], _ns(record)


def _workflow_row(wf_seq: int, run_id: str, submitted: RunSubmitted, status: Status, submitted_at: int,
                  start: int | None, end: int | None) -> dict[str, Any]:
    return {
        "id": wf_seq,
        "name": submitted.name,
        "run_id": run_id,
        "type": "cwl",
        "status": int(status),
        "status_name": status.name,
        "start_time": start if start is not None else submitted_at,
        "end_time": end,
        "submitted_time": submitted_at,
        "params": {
            "workflow": submitted.workflow,
            "job": submitted.job,
            "inputs": submitted.inputs,
            "outdir": submitted.outdir,
            "workdir": submitted.workdir,
            "config": submitted.config,
            "rerun_of": submitted.rerun_of,
            "engine_version": submitted.engine_version,
            "document_digest": submitted.document_digest,
        },
    }


# --- the database --------------------------------------------------------------------------------


class EventLogDatabase(Database):
    """The default Database: projections of the event log, plus a KV bucket for configurations.

    See the module documentation for the id scheme and what is stored where.

    Args:
        context: the StreamFlow context, when built by one (it may be ``None`` when the
            database is opened directly on a ``log``).
        log: an open event log to read (and whose connection to use); the caller keeps
            owning it. Without it the database connects on first use.
        servers: NATS URL(s) to connect to when no ``log`` is given (default: the
            ``STREAMFLOW_NATS_*`` variables, then the shared embedded server).
        bucket: the KV bucket of the stored rows.
        rebuild_graphs: whether step/port dependencies may rebuild a run's graph from its
            workflow document (otherwise only what the log shows is used).
    """

    def __init__(
        self,
        context: StreamFlowContext | None = None,
        *,
        log: EventLog | None = None,
        servers: str | Sequence[str] | None = None,
        bucket: str = RECORDS_BUCKET,
        rebuild_graphs: bool = True,
    ) -> None:
        super().__init__(cast("StreamFlowContext", context))
        self._log = log
        self._servers = [servers] if isinstance(servers, str) else list(servers or [])
        self._bucket_name = bucket
        self._rebuild_graphs = rebuild_graphs
        self._kv: KeyValue | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._open_lock = asyncio.Lock()
        self._views: dict[str, _RunView] = {}
        self._graphs: dict[str, WorkflowGraph | None] = {}
        self._lifecycles: dict[str, _Lifecycle] = {}
        self._lifecycle_seq = 0
        self._lifecycle_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of ``database.config`` in ``streamflow.yml``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "servers": {
                    "type": ["string", "array"],
                    "items": {"type": "string"},
                    "description": "NATS URL(s) of the bus holding the event log (default: as the CLI)",
                },
                "bucket": {"type": "string", "description": "KV bucket of the stored rows (default sf_db)"},
                "rebuild_graphs": {
                    "type": "boolean",
                    "description": "Rebuild run graphs from their documents for step/port dependencies",
                },
            },
            "additionalProperties": False,
        }

    # --- connection ----------------------------------------------------------------------------

    async def _event_log(self) -> EventLog:
        if self._closed:
            raise EventLogError("the database is closed")
        if self._log is not None:
            return self._log
        async with self._open_lock:
            if self._log is None:
                from streamflow.bus import BusOptions, open_bus

                stack = contextlib.AsyncExitStack()
                options = BusOptions.from_env(servers=self._servers or None, name="streamflow-db")
                nc = await stack.enter_async_context(open_bus(options))
                self._stack = stack
                log = EventLog(nc)
                await log.setup()
                self._log = log
            return self._log

    async def _bucket(self) -> KeyValue:
        if self._kv is not None:
            return self._kv
        log = await self._event_log()
        try:
            self._kv = await log.js.key_value(self._bucket_name)
        except nats.js.errors.BucketNotFoundError:
            config = api.KeyValueConfig(bucket=self._bucket_name, history=5, storage=api.StorageType.FILE,
                                        replicas=log.replicas, description="StreamFlow Database rows")
            try:
                self._kv = await log.js.create_key_value(config)
            except nats.js.errors.BadRequestError:  # created concurrently by another client
                self._kv = await log.js.key_value(self._bucket_name)
        return self._kv

    async def close(self) -> None:
        """Release the connection this database opened (not a ``log`` passed in). Idempotent."""
        if self._closed:
            return
        self._closed = True
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # --- read side: folding -------------------------------------------------------------------

    async def _view(self, run_id: str) -> _RunView:
        """The run's view, brought up to date with the log."""
        log = await self._event_log()
        view = self._views.get(run_id)
        if view is None:
            view = self._views.setdefault(run_id, _RunView(run_id))
        async with view.lock:
            async for record in log.read(run_id, from_stream_seq=view.last_seq + 1):
                view.apply(record)
        if view.submitted is None:
            raise KeyError(f"run {run_id!r} has no RunSubmitted event")
        return view

    async def _lifecycles_now(self) -> list[_Lifecycle]:
        """Every run's lifecycle, brought up to date, in submission order."""
        log = await self._event_log()
        async with self._lifecycle_lock:
            async for record in log.read_all(subject_filter="sf.ev.*.wf", from_stream_seq=self._lifecycle_seq + 1):
                self._lifecycle_seq = record.stream_seq
                run_id = record.envelope.run_id
                body = record.body
                if isinstance(body, RunSubmitted):
                    if run_id not in self._lifecycles:
                        summary = RunSummary(run_id=run_id)
                        summary.apply(record)
                        self._lifecycles[run_id] = _Lifecycle(run_id, record.stream_seq, body, _ns(record),
                                                              summary=summary)
                elif run_id in self._lifecycles:
                    self._lifecycles[run_id].apply(record)
        return sorted(self._lifecycles.values(), key=lambda lc: lc.wf_seq)

    # --- the read model of runs ----------------------------------------------------------------

    async def get_run_summary(self, run_id: str) -> RunSummary:
        """The run's projection, brought up to date with the log (folded incrementally).

        Raises:
            RunNotFoundError: the run has no events.
        """
        try:
            view = await self._view(run_id)
        except KeyError:
            raise RunNotFoundError(f"no run {run_id!r} in the event log") from None
        return view.summary

    async def get_run_summaries(self) -> list[RunSummary]:
        """Every run's lifecycle, folded from ``sf.ev.*.wf`` only, in submission order."""
        return [lc.summary for lc in await self._lifecycles_now() if lc.summary is not None]

    async def _run_of(self, seq: int, what: str) -> tuple[str, str]:
        """Return ``(run id, subject)`` of the event stored at stream sequence ``seq``."""
        if not isinstance(seq, int) or seq <= 0:
            raise KeyError(f"no {what} {seq!r}")
        log = await self._event_log()
        try:
            msg = await log.js.get_msg(EVENTS_STREAM, seq=seq)
        except nats.js.errors.NotFoundError:
            raise KeyError(f"no {what} {seq}") from None
        if msg.subject is None or msg.data is None:
            raise KeyError(f"no {what} {seq}")
        return decode(msg.data).run_id, msg.subject

    async def _run_of_workflow(self, workflow_id: PersistentId) -> _RunView:
        run_id, subject = await self._run_of(workflow_id, "workflow")
        if subject != run_subject(run_id, "wf"):
            raise KeyError(f"no workflow {workflow_id}")
        view = await self._view(run_id)
        if view.wf_seq != workflow_id:
            raise KeyError(f"no workflow {workflow_id}")
        return view

    async def _entity(self, entity_id: PersistentId, what: str) -> tuple[_RunView, str]:
        """Resolve a step or port id to its run view and short id (``s3``, ``p7``)."""
        if not isinstance(entity_id, int) or entity_id <= 0:
            raise KeyError(f"no {what} {entity_id!r}")
        index = (entity_id & _INDEX_MASK) - 1
        view = await self._run_of_workflow(entity_id >> _INDEX_BITS)
        assert view.submitted is not None
        table = view.submitted.steps if what == "step" else view.submitted.ports
        ids = list(table)
        if not 0 <= index < len(ids):
            raise KeyError(f"no {what} {entity_id}")
        return view, ids[index]

    async def _token_view(self, token_id: PersistentId) -> tuple[_RunView, _Token]:
        run_id, _ = await self._run_of(token_id, "token")
        view = await self._view(run_id)
        token = view.tokens.get(token_id)
        if token is None:
            raise KeyError(f"no token {token_id}")
        return view, token

    async def _execution_view(self, execution_id: PersistentId) -> tuple[_RunView, _Execution]:
        run_id, _ = await self._run_of(execution_id, "execution")
        view = await self._view(run_id)
        execution = view.executions.get(execution_id)
        if execution is None:
            raise KeyError(f"no execution {execution_id}")
        return view, execution

    # --- read side: ids and rows --------------------------------------------------------------

    @staticmethod
    def _pid(view: _RunView, what: str, short_id: str) -> PersistentId:
        assert view.submitted is not None
        table = view.submitted.steps if what == "step" else view.submitted.ports
        return (view.wf_seq << _INDEX_BITS) | (list(table).index(short_id) + 1)

    async def _graph(self, view: _RunView) -> WorkflowGraph | None:
        """The run's graph, rebuilt from its document, or None when that is not possible."""
        if not self._rebuild_graphs or view.submitted is None:
            return None
        if view.run_id not in self._graphs:
            submitted = view.submitted
            graph: WorkflowGraph | None = None
            try:
                from streamflow.cwl.loader import load_document
                from streamflow.cwl.translator import translate

                loaded = await asyncio.to_thread(load_document, submitted.workflow)
                graph = translate(loaded.process, cwl_version=loaded.cwl_version, name=submitted.name,
                                  job_order=dict(submitted.inputs))
                names = {sid: step.name for sid, step in graph.steps.items()}
                if names != submitted.steps or {p: d.name for p, d in graph.ports.items()} != submitted.ports:
                    graph = None  # the document changed since the run: trust the log only
            except Exception as exc:  # any loading failure: fall back to the log
                _log.debug("graph_unavailable", run_id=view.run_id, error=str(exc))
                graph = None
            self._graphs[view.run_id] = graph
        return self._graphs[view.run_id]

    def _step_row(self, view: _RunView, step: str, graph: WorkflowGraph | None) -> dict[str, Any]:
        assert view.submitted is not None
        name = view.submitted.steps[step]
        kind = graph.steps[step].kind if graph is not None else _kind_from_name(name)
        status = view.step_status.get(step, Status.WAITING)
        return {
            "id": self._pid(view, "step", step),
            "name": name,
            "workflow": view.wf_seq,
            "status": int(status),
            "status_name": status.name,
            "type": kind,
            "params": {"step_id": step, "run_id": view.run_id},
        }

    def _port_row(self, view: _RunView, port: str) -> dict[str, Any]:
        assert view.submitted is not None
        status = view.port_status.get(port, Status.WAITING)
        return {
            "id": self._pid(view, "port", port),
            "name": view.submitted.ports[port],
            "workflow": view.wf_seq,
            "type": "Port",
            "status": int(status),
            "status_name": status.name,
            "params": {"port_id": port, "run_id": view.run_id, "tokens": len(view.port_tokens.get(port, []))},
        }

    def _token_row(self, view: _RunView, token: _Token) -> dict[str, Any]:
        return {
            "id": token.seq,
            "port": self._pid(view, "port", token.port),
            "tag": token.tag,
            "type": "Token",
            "value": token.value,
            "recoverable": False,
            "job": token.job,
            "producer": self._pid(view, "step", token.producer) if view.submitted and token.producer in
            view.submitted.steps else None,
            "event_id": token.event_id,
            "time": token.time,
        }

    def _execution_row(self, view: _RunView, execution: _Execution) -> dict[str, Any]:
        assert view.submitted is not None
        step_name = view.submitted.steps.get(execution.step, execution.step)
        return {
            "id": execution.seq,
            "step": self._pid(view, "step", execution.step) if execution.step in view.submitted.steps else None,
            "job_token": None,
            "cmd": "",
            "status": int(execution.status),
            "status_name": execution.status.name,
            "start_time": execution.start,
            "end_time": execution.end,
            "job": execution.job,
            "name": f"{step_name}/{execution.tag}" if execution.tag else step_name,
            "tag": execution.tag,
            "attempt": execution.attempt,
            "delivery": execution.delivery,
            "worker": execution.worker,
            "workdir": execution.workdir,
            "exit_code": execution.exit_code,
            "error": execution.error,
        }

    async def _dependencies(self, view: _RunView, step: str) -> tuple[dict[str, str], dict[str, str]]:
        """``(inputs, outputs)`` of a step: local name -> port id."""
        graph = await self._graph(view)
        if graph is not None:
            definition = graph.steps[step]
            outputs = dict(definition.outputs)
            extra = list(getattr(definition, "skip_outputs", {}).values()) + list(
                getattr(definition, "size_ports", []))
            for port in extra:
                if port not in outputs.values():
                    outputs[graph.ports[port].name.rpartition("/")[2]] = port
            return dict(definition.inputs), outputs
        assert view.submitted is not None
        ports = view.submitted.ports
        seen_outputs: dict[str, str] = {}
        seen_inputs: dict[str, str] = {}
        for token in view.tokens.values():
            if token.producer != step:
                continue
            seen_outputs.setdefault(ports.get(token.port, token.port).rpartition("/")[2], token.port)
            for source in view.dependees(token):
                port = view.tokens[source].port
                seen_inputs.setdefault(ports.get(port, port).rpartition("/")[2], port)
        return seen_inputs, seen_outputs

    def _dependency_rows(self, view: _RunView, step: str, ports: Mapping[str, str],
                         kind: DependencyType) -> list[Row]:
        return [{"step": self._pid(view, "step", step), "port": self._pid(view, "port", port), "name": name,
                 "type": int(kind)} for name, port in ports.items()]

    # --- get --------------------------------------------------------------------------------------

    async def get_workflow(self, workflow_id: PersistentId) -> Row:
        """Return a run as a workflow row (name, status, start/end times in ns, params)."""
        view = await self._run_of_workflow(workflow_id)
        assert view.submitted is not None
        return _workflow_row(view.wf_seq, view.run_id, view.submitted, view.status, view.submitted_at,
                             view.start, view.end)

    async def get_workflows_by_name(self, workflow_name: str, last_only: bool = False) -> list[Row]:
        """Return the runs of ``workflow_name``, newest first."""
        rows: list[Row] = [
            _workflow_row(lc.wf_seq, lc.run_id, lc.submitted, lc.status, lc.submitted_at, lc.start, lc.end)
            for lc in reversed(await self._lifecycles_now()) if lc.submitted.name == workflow_name
        ]
        return rows[:1] if last_only else rows

    async def get_workflows_list(self, name: str | None) -> list[Row]:
        """Without ``name``: one row per workflow name (``name``, ``type``, ``num`` runs,
        ``status`` of the last run, ``last_id``); with it: one row per run of ``name``."""
        if name is not None:
            return await self.get_workflows_by_name(name)
        summary: dict[str, dict[str, Any]] = {}
        for lc in await self._lifecycles_now():
            row = summary.setdefault(lc.submitted.name, {"name": lc.submitted.name, "type": "cwl", "num": 0})
            row.update(num=row["num"] + 1, status=int(lc.status), status_name=lc.status.name,
                       last_id=lc.wf_seq, end_time=lc.end)
        return sorted(summary.values(), key=lambda r: r["last_id"], reverse=True)

    async def get_workflow_steps(self, workflow_id: PersistentId) -> list[Row]:
        """Return the steps of a run, in translation order."""
        view = await self._run_of_workflow(workflow_id)
        graph = await self._graph(view)
        assert view.submitted is not None
        return [self._step_row(view, step, graph) for step in view.submitted.steps]

    async def get_workflow_ports(self, workflow_id: PersistentId) -> list[Row]:
        """Return the ports of a run, in translation order."""
        view = await self._run_of_workflow(workflow_id)
        assert view.submitted is not None
        return [self._port_row(view, port) for port in view.submitted.ports]

    async def get_step(self, step_id: PersistentId) -> Row:
        """Return a step."""
        view, step = await self._entity(step_id, "step")
        return self._step_row(view, step, await self._graph(view))

    async def get_port(self, port_id: PersistentId) -> Row:
        """Return a port."""
        view, port = await self._entity(port_id, "port")
        return self._port_row(view, port)

    async def get_input_ports(self, step_id: PersistentId) -> list[Row]:
        """Return the input dependencies of a step (``step``, ``port``, ``name``, ``type``)."""
        view, step = await self._entity(step_id, "step")
        inputs, _ = await self._dependencies(view, step)
        return self._dependency_rows(view, step, inputs, DependencyType.INPUT)

    async def get_output_ports(self, step_id: PersistentId) -> list[Row]:
        """Return the output dependencies of a step (``step``, ``port``, ``name``, ``type``)."""
        view, step = await self._entity(step_id, "step")
        _, outputs = await self._dependencies(view, step)
        return self._dependency_rows(view, step, outputs, DependencyType.OUTPUT)

    async def _port_steps(self, port_id: PersistentId, kind: DependencyType) -> list[Row]:
        view, _ = await self._entity(port_id, "port")
        assert view.submitted is not None
        rows: list[Row] = []
        for step in view.submitted.steps:
            inputs, outputs = await self._dependencies(view, step)
            ports = inputs if kind is DependencyType.INPUT else outputs
            rows.extend(row for row in self._dependency_rows(view, step, ports, kind)
                        if row["port"] == port_id)
        return rows

    async def get_input_steps(self, port_id: PersistentId) -> list[Row]:
        """Return the steps that read from a port (dependency rows)."""
        return await self._port_steps(port_id, DependencyType.INPUT)

    async def get_output_steps(self, port_id: PersistentId) -> list[Row]:
        """Return the steps that write to a port (dependency rows)."""
        return await self._port_steps(port_id, DependencyType.OUTPUT)

    async def get_port_tokens(self, port_id: PersistentId) -> list[PersistentId]:
        """Return the ids (stream sequences) of the tokens emitted on a port, in order."""
        view, port = await self._entity(port_id, "port")
        return list(view.port_tokens.get(port, []))

    async def get_token(self, token_id: PersistentId) -> Row:
        """Return a token (``port``, ``tag``, ``value``, ``job``, ``producer``...)."""
        view, token = await self._token_view(token_id)
        return self._token_row(view, token)

    async def get_port_from_token(self, token_id: PersistentId) -> Row:
        """Return the port a token was emitted on."""
        view, token = await self._token_view(token_id)
        return self._port_row(view, token.port)

    async def get_dependees(self, token_id: PersistentId) -> list[Row]:
        """Return ``{"dependee", "depender"}`` rows: the tokens ``token_id`` was computed from."""
        view, token = await self._token_view(token_id)
        return [{"dependee": source, "depender": token_id} for source in view.dependees(token)]

    async def get_dependers(self, token_id: PersistentId) -> list[Row]:
        """Return ``{"dependee", "depender"}`` rows: the tokens computed from ``token_id``."""
        view, _ = await self._token_view(token_id)
        return [{"dependee": token_id, "depender": target} for target in view.dependers.get(token_id, [])]

    async def get_execution(self, execution_id: PersistentId) -> Row:
        """Return a job attempt (id: the stream sequence of its ``JobStarted``)."""
        view, execution = await self._execution_view(execution_id)
        return self._execution_row(view, execution)

    async def get_executions_by_step(self, step_id: PersistentId) -> list[Row]:
        """Return the job attempts of a step, oldest first."""
        view, step = await self._entity(step_id, "step")
        return [self._execution_row(view, e) for seq, e in sorted(view.executions.items()) if e.step == step]

    async def get_reports(self, workflow: str, last_only: bool = False) -> list[list[Row]]:
        """Return, per run of ``workflow`` (newest first), one row per job attempt:
        ``name`` (step name/tag), ``job``, ``status``, ``start_time`` and ``end_time`` (ns)."""
        reports: list[list[Row]] = []
        for run in await self.get_workflows_by_name(workflow, last_only=last_only):
            view = await self._view(run["run_id"])
            reports.append([
                {key: row[key] for key in ("id", "name", "job", "tag", "attempt", "status", "status_name",
                                           "start_time", "end_time")} | {"workflow": view.wf_seq}
                for row in (self._execution_row(view, e) for _, e in sorted(view.executions.items()))
            ])
        return reports

    # --- write side: actor-owned entities ----------------------------------------------------------

    async def add_workflow(self, name: str, params: Mapping[str, Any], status: int, type: str) -> PersistentId:
        """Refused: a workflow is a run, recorded by ``RunSubmitted`` (``streamflow run``)."""
        raise _owned("workflows", "RunSubmitted on sf.ev.<run>.wf, written by `streamflow run`")

    async def add_step(self, name: str, workflow_id: PersistentId, status: int, type: str,
                       params: Mapping[str, Any]) -> PersistentId:
        """Refused: steps are listed by ``RunSubmitted`` and their lifecycle by the Step actors."""
        raise _owned("steps", "RunSubmitted.steps and the Step actors' events on sf.ev.<run>.step.<step>")

    async def add_port(self, name: str, workflow_id: PersistentId, type: str,
                       params: Mapping[str, Any]) -> PersistentId:
        """Refused: ports are listed by ``RunSubmitted`` and written by the Port actors."""
        raise _owned("ports", "RunSubmitted.ports and the Port actors' events on sf.ev.<run>.port.<port>")

    async def add_dependency(self, step: PersistentId, port: PersistentId, type: DependencyType,
                             name: str) -> None:
        """Refused: dependencies are the run's graph, translated from its document."""
        raise _owned("step/port dependencies", "the graph translated from the document named in RunSubmitted")

    async def add_token(self, tag: str, type: str, value: Any, port: PersistentId | None = None,
                        recoverable: bool = False) -> PersistentId:
        """Refused: tokens are ``TokenEmitted`` events of the Port actors."""
        raise _owned("tokens", "TokenEmitted on sf.ev.<run>.port.<port>, written by the Port actors")

    async def add_provenance(self, inputs: Sequence[PersistentId], token: PersistentId) -> None:
        """Refused: provenance is ``TokenEmitted.inputs``."""
        raise _owned("token provenance links", "TokenEmitted.inputs")

    async def add_execution(self, step_id: PersistentId, job_token_id: PersistentId, cmd: str) -> PersistentId:
        """Refused: executions are ``JobStarted``/``JobCompleted``/``JobFailed`` of the workers."""
        raise _owned("executions", "JobStarted/JobCompleted/JobFailed on sf.ev.<run>.job.<job>, written by workers")

    async def update_workflow(self, workflow_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Refused: a run's status changes with its lifecycle events."""
        raise _owned("workflow statuses", "RunStarted/RunCompleted/RunFailed/RunCancelled")

    async def update_step(self, step_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Refused: a step's status changes with the Step actor's events."""
        raise _owned("step statuses", "JobRequested/StepFailed/StepTerminated")

    async def update_port(self, port_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Refused: a port changes with the Port actor's events."""
        raise _owned("ports", "TokenEmitted/PortTerminated")

    async def update_execution(self, execution_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Refused: an execution ends with ``JobCompleted``/``JobFailed``."""
        raise _owned("execution statuses", "JobCompleted/JobFailed")

    # --- write side: rows in the KV bucket ----------------------------------------------------------

    async def add_record(self, kind: str, data: Mapping[str, Any]) -> PersistentId:
        """Store a row of ``kind`` (a KV-key-safe word) and return its new id (1, 2, ...)."""
        kv = await self._bucket()
        counter = f"_seq.{kind}"
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await kv.get(counter)
            except nats.js.errors.KeyNotFoundError:
                new_id, last = 1, 0
            else:
                new_id, last = int(entry.value or b"0") + 1, entry.revision or 0
            try:
                if last:
                    await kv.update(counter, str(new_id).encode(), last=last)
                else:
                    await kv.create(counter, str(new_id).encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # another writer took this id: read the counter again
            row = dict(data) | {"id": new_id}
            try:
                await kv.create(f"{kind}.{new_id}", _json_encoder.encode(row))
            except nats.js.errors.KeyWrongLastSequenceError:
                continue  # a row exists under an id the counter did not know: take the next one
            return new_id
        raise EventLogError(f"cannot allocate an id for {kind}: too much contention on {counter}")

    async def get_record(self, kind: str, record_id: PersistentId) -> Row:
        """Return the row ``record_id`` of ``kind``.

        Raises:
            KeyError: no such row.
        """
        kv = await self._bucket()
        try:
            entry = await kv.get(f"{kind}.{int(record_id)}")
        except nats.js.errors.KeyNotFoundError:
            raise KeyError(f"no {kind} {record_id}") from None
        return _json_decoder.decode(entry.value or b"{}")

    async def update_record(self, kind: str, record_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Merge ``updates`` into the row ``record_id`` of ``kind`` (compare-and-set); return its id.

        Raises:
            KeyError: no such row.
        """
        kv = await self._bucket()
        key = f"{kind}.{int(record_id)}"
        for _ in range(_CAS_ATTEMPTS):
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                raise KeyError(f"no {kind} {record_id}") from None
            row = _json_decoder.decode(entry.value or b"{}") | dict(updates) | {"id": int(record_id)}
            try:
                await kv.update(key, _json_encoder.encode(row), last=entry.revision)
            except nats.js.errors.KeyWrongLastSequenceError:
                continue
            return int(record_id)
        raise EventLogError(f"cannot update {key}: too much contention")

    async def add_deployment(self, name: str, type: str, config: Mapping[str, Any], external: bool, lazy: bool,
                             scheduling_policy: str | None, workdir: str | None,
                             wraps: Mapping[str, Any] | None) -> PersistentId:
        """Store a deployment configuration in the KV bucket and return its id."""
        return await self.add_record("deployment", {
            "name": name, "type": type, "config": dict(config), "external": external, "lazy": lazy,
            "scheduling_policy": scheduling_policy, "workdir": workdir,
            "wraps": dict(wraps) if wraps is not None else None,
        })

    async def add_target(self, deployment: PersistentId, type: str, params: Mapping[str, Any], locations: int = 1,
                         service: str | None = None, workdir: str | None = None) -> PersistentId:
        """Store a binding target in the KV bucket and return its id."""
        return await self.add_record("target", {
            "deployment": deployment, "type": type, "params": dict(params), "locations": locations,
            "service": service, "workdir": workdir,
        })

    async def add_filter(self, name: str, type: str, config: Mapping[str, Any]) -> PersistentId:
        """Store a binding filter configuration in the KV bucket and return its id."""
        return await self.add_record("filter", {"name": name, "type": type, "config": dict(config)})

    async def get_deployment(self, deployment_id: PersistentId) -> Row:
        """Return a deployment."""
        return await self.get_record("deployment", deployment_id)

    async def get_target(self, target_id: PersistentId) -> Row:
        """Return a target."""
        return await self.get_record("target", target_id)

    async def get_filter(self, filter_id: PersistentId) -> Row:
        """Return a binding filter."""
        return await self.get_record("filter", filter_id)

    async def update_deployment(self, deployment_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a deployment; return its id."""
        return await self.update_record("deployment", deployment_id, updates)

    async def update_target(self, target_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a target; return its id."""
        return await self.update_record("target", target_id, updates)

    async def update_filter(self, filter_id: PersistentId, updates: Mapping[str, Any]) -> PersistentId:
        """Update fields of a binding filter; return its id."""
        return await self.update_record("filter", filter_id, updates)

