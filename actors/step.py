"""Step actors: one per step of the dataflow graph, one class per step kind.

Every step folds the tokens of its input ports (``TokenEmitted``/``PortTerminated``) and
of its output ports (to know what it already produced, so replay never produces twice),
and owns ``sf.ev.<run>.step.<id>``. A step *fires* for a tag when every input port has a
token with that tag (gather steps fire per size token instead); it *terminates* when all
its input ports have terminated and every fired tag is complete.

The execute step drives a job's life through the other actors, only by events: it
appends ``JobRequested``; the Scheduler answers ``JobScheduled``; the DataManager answers
``InputsStaged``; the step then queues a task on the work queue; a worker answers
``JobCompleted``/``JobFailed``; the FailureManager answers ``JobRetryScheduled`` or
``JobAbandoned``. On completion the step puts the job's outputs on its output ports.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any, ClassVar

import structlog

from actors._runtime import Actor, Interest, RunContext
from actors.port import PutRequest, put_token
from events.log import Record
from events.schema import (
    InputsStaged,
    JobAbandoned,
    JobCompleted,
    JobRequested,
    JobRetryScheduled,
    JobReused,
    JobRollback,
    JobScheduled,
    JobStarted,
    PortTerminated,
    StepFailed,
    StepTerminated,
    TokenEmitted,
)
from events.tasks import JobTask, encode_task, task_subject
from streamflow.errors import StreamFlowError, WorkflowExecutionError
from streamflow.workflow.graph import (
    ConditionalStep,
    ExecuteStep,
    GatherStep,
    InputStep,
    ScatterStep,
    StepDef,
    TransformStep,
    ValueFromStep,
)

__all__ = ["StepActor", "job_id", "make_step_actor"]

log = structlog.get_logger("streamflow.step")
_PUT_CONCURRENCY = 64
_JOB_AGGREGATES = frozenset({"alloc", "data", "job", "recovery"})  # the subjects of a step's jobs


def job_id(step_id: str, tag: str) -> str:
    """The job id of a step's firing for a tag (a valid subject token)."""
    return f"{step_id}-{tag.replace('.', '_')}"


def parent_tag(tag: str, depth: int = 1) -> str:
    """Strip ``depth`` components from a tag."""
    return ".".join(tag.split(".")[:-depth])


def _tag_key(tag: str) -> tuple[int, ...]:
    return tuple(int(p) for p in tag.split("."))


class StepActor(Actor):
    """Base of the step actors: input joining, output bookkeeping, termination.

    Args:
        ctx: the run context.
        step: the step definition.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "tokens": dict[str, dict[str, tuple[Any, str]]],
        "in_terminated": set[str],
        "in_status": dict[str, str],
        "present": dict[str, set[str]],
        "ready": dict[str, None],
        "completed": set[str],
        "terminated": bool,
        "failed": bool,
    }
    #: Whether ready tags may be processed concurrently (their work is independent per tag).
    CONCURRENT_TAGS: ClassVar[bool] = False

    def __init__(self, ctx: RunContext, step: StepDef) -> None:
        super().__init__(ctx, f"step:{step.id}")
        self.step = step
        prefix = f"sf.ev.{ctx.run_id}.port."
        self.subject = f"sf.ev.{ctx.run_id}.step.{step.id}"
        self.in_ports = sorted(set(step.inputs.values()))
        self.out_ports = sorted(set(self.written_ports()))
        self._in_subjects = {prefix + p: p for p in self.in_ports}
        self._out_subjects = {prefix + p: p for p in self.out_ports}
        self.tokens: dict[str, dict[str, tuple[Any, str]]] = {p: {} for p in self.in_ports}
        self.in_terminated: set[str] = set()
        self.in_status: dict[str, str] = {}
        self.present: dict[str, set[str]] = {p: set() for p in self.out_ports}
        self.ready: dict[str, None] = {} if self.in_ports else {"0": None}
        self.completed: set[str] = set()
        self.dirty: set[str] = set(self.ready)
        self._first_react = True
        self.terminated = False
        self.failed = False

    # -- what the step writes -------------------------------------------------------

    def written_ports(self) -> list[str]:
        """Every port this step writes on."""
        return list(self.step.outputs.values())

    # -- folding ---------------------------------------------------------------------

    def interested(self, record: Record) -> bool:
        return (record.subject == self.subject or record.subject in self._in_subjects
                or record.subject in self._out_subjects)

    def interest(self) -> Interest | None:
        return Interest(subjects=frozenset({self.subject, *self._in_subjects, *self._out_subjects}))

    def apply(self, record: Record) -> None:
        body = record.body
        subject = record.subject
        if subject == self.subject:
            if isinstance(body, StepTerminated):
                self.terminated = True
            elif isinstance(body, StepFailed):
                self.failed = True
            return
        in_port = self._in_subjects.get(subject)
        if in_port is not None:
            if isinstance(body, TokenEmitted):
                self.tokens[in_port][body.tag] = (body.value, record.envelope.event_id)
                self.on_input(in_port, body.tag)
            elif isinstance(body, PortTerminated):
                self.in_terminated.add(in_port)
                self.in_status[in_port] = body.status
        out_port = self._out_subjects.get(subject)
        if out_port is not None and isinstance(body, TokenEmitted):
            self.present[out_port].add(body.tag)

    def on_input(self, port: str, tag: str) -> None:
        """A token arrived: the tag becomes ready once every input port has it."""
        if all(tag in self.tokens[p] for p in self.in_ports):
            self.ready[tag] = None
            self.dirty.add(tag)

    def inputs_for(self, tag: str) -> dict[str, Any]:
        """The input object of a firing: constants overlaid with the port values."""
        values = dict(self.step.constants)
        for name, port in self.step.inputs.items():
            values[name] = self.tokens[port][tag][0] if port in self.tokens and tag in self.tokens[port] else None
        return values

    def provenance(self, tag: str) -> list[str]:
        """Event ids of the tokens a firing consumed."""
        return [self.tokens[p][tag][1] for p in self.in_ports if tag in self.tokens[p]]

    # -- deciding --------------------------------------------------------------------

    def is_complete(self, tag: str) -> bool:
        """Whether the work for ``tag`` is fully recorded."""
        return bool(self.out_ports) and all(tag in self.present[p] for p in self.step.outputs.values())

    async def process(self, tag: str) -> None:
        """Do the work for a ready tag (kind-specific)."""
        raise NotImplementedError

    def quiescent(self) -> bool:
        """Whether nothing is in flight (execute steps wait for their jobs)."""
        return True

    @property
    def done(self) -> bool:
        return self.terminated

    async def react(self) -> None:
        if self.terminated:
            return
        if self._first_react:
            self._first_react = False
            self.dirty.update(self.ready)
        todo = sorted((t for t in self.dirty if t in self.ready), key=_tag_key)
        self.dirty.clear()
        try:
            if self.CONCURRENT_TAGS and len(todo) > 1:
                await self._process_concurrently(todo)
            else:
                for tag in todo:
                    await self._process_one(tag)
            if not self.failed and self.can_terminate():
                await self.terminate("COMPLETED")
        except StreamFlowError as exc:
            await self.fail(str(exc))
        except Exception as exc:  # supervision boundary: a bug fails the step, not the host
            log.exception("step_crashed", step=self.step.name)
            await self.fail(f"{self.step.name}: internal error: {exc!r}")

    async def _process_one(self, tag: str) -> None:
        if tag in self.completed:
            return
        if self.is_complete(tag):
            self.completed.add(tag)
            return
        await self.process(tag)

    async def _process_concurrently(self, tags: list[str]) -> None:
        """Process ready tags with up to ``_PUT_CONCURRENCY`` in flight: their appends are
        pipelined (one flush carries many) instead of one awaited round trip after another.
        Each tag touches only its own state; the first error (in tag order) is raised once all
        have ended. ``_PUT_CONCURRENCY`` workers take the tags in turn: a 100,000-way scatter
        makes that many tags ready at once, and a task per tag held a task, a future and a
        coroutine frame for each (hundreds of MB) while they waited for the semaphore."""
        todo = iter(enumerate(tags))
        errors: list[tuple[int, Exception]] = []

        async def _worker() -> None:
            for index, tag in todo:
                try:
                    await self._process_one(tag)
                except Exception as exc:  # collected: raised once every tag has been processed
                    errors.append((index, exc))

        await asyncio.gather(*(_worker() for _ in range(min(_PUT_CONCURRENCY, len(tags)))))
        if errors:
            raise min(errors, key=lambda item: item[0])[1]

    def can_terminate(self) -> bool:
        """All inputs terminated, every ready tag complete, nothing in flight."""
        if self.in_ports and len(self.in_terminated) < len(self.in_ports):
            return False
        return len(self.completed) >= len(self.ready) and self.quiescent()

    async def put(self, port: str, tag: str, value: Any, *, inputs: list[str] | None = None,
                  job: str | None = None) -> None:
        """Put a token on one of this step's output ports."""
        await put_token(self.ctx, port, PutRequest(tag=tag, value=value, producer=self.step.id, job=job,
                                                   inputs=inputs or []))
        self.present.setdefault(port, set()).add(tag)

    async def put_many(self, puts: list[tuple[str, str, Any]], *, inputs: list[str] | None = None,
                       job: str | None = None) -> None:
        """Put several tokens concurrently (bounded)."""
        if len(puts) == 1:  # the common case (one output): no task group, no task switch
            await self.put(*puts[0], inputs=inputs, job=job)
            return
        # ``_PUT_CONCURRENCY`` workers take the puts in turn (a 100,000-way scatter's tokens:
        # a task per put held 100,000 tasks and coroutine frames at once). After an error no
        # new put starts; those in flight end, then the first error is raised.
        todo = iter(puts)
        errors: list[Exception] = []

        async def _worker() -> None:
            for port, tag, value in todo:
                if errors:
                    return
                try:
                    await self.put(port, tag, value, inputs=inputs, job=job)
                except Exception as exc:
                    errors.append(exc)
                    return

        await asyncio.gather(*(_worker() for _ in range(min(_PUT_CONCURRENCY, len(puts)))))
        if errors:
            raise errors[0]

    async def terminate(self, status: str) -> None:
        """Record that this step will produce nothing more."""
        if self.terminated:
            return
        await self.append("step", self.step.id, StepTerminated(status=status, fired=len(self.completed)),
                          key="terminated")
        self.terminated = True
        log.debug("step_terminated", step=self.step.name, status=status, fired=len(self.completed))

    async def fail(self, error: str, *, tag: str | None = None, job: str | None = None) -> None:
        """Record a failure of this step; the run fails with it."""
        if self.failed:
            return
        self.failed = True
        log.error("step_failed", step=self.step.name, error=error, tag=tag, job=job)
        await self.append("step", self.step.id, StepFailed(error=error, tag=tag, job=job), key="failed")
        await self.terminate("FAILED")


def _evaluator(requirements: list[Any], cwl_version: str) -> Any:
    from streamflow.cwl.expression import ExpressionEvaluator

    return ExpressionEvaluator(requirements, cwl_version)


class InputStepActor(StepActor):
    """Injects a workflow input."""

    step: InputStep

    async def process(self, tag: str) -> None:
        await self.put(self.step.outputs["value"], tag, self.step.value)
        self.completed.add(tag)


class TransformStepActor(StepActor):
    """Merges sources, picks values, applies defaults."""

    step: TransformStep

    async def process(self, tag: str) -> None:
        step = self.step
        values = self.inputs_for(tag)
        sources = [values[k] for k in sorted((k for k in step.inputs), key=int)]
        value: Any
        if step.link_merge is None and len(sources) == 1:
            value = sources[0]
        elif step.link_merge == "merge_flattened":
            value = []
            for item in sources:
                if isinstance(item, list):
                    value.extend(item)
                else:
                    value.append(item)
        else:
            value = list(sources)
        if step.pick_value is not None:
            value = _pick_value(step.pick_value, value, step.name)
        if value is None and step.has_default:
            value = step.default
        await self.put(step.outputs["value"], tag, value, inputs=self.provenance(tag))
        self.completed.add(tag)


def _pick_value(method: str, value: Any, where: str) -> Any:
    if not isinstance(value, list):
        raise WorkflowExecutionError(f"{where}: pickValue {method} needs a list, got {type(value).__name__}")
    non_null = [v for v in value if v is not None]
    if method == "first_non_null":
        if not non_null:
            raise WorkflowExecutionError(f"{where}: pickValue first_non_null found only null values")
        return non_null[0]
    if method == "the_only_non_null":
        if len(non_null) != 1:
            raise WorkflowExecutionError(
                f"{where}: pickValue the_only_non_null expected exactly one non-null value, found {len(non_null)}")
        return non_null[0]
    return non_null


class ValueFromStepActor(StepActor):
    """Evaluates ``valueFrom`` expressions."""

    step: ValueFromStep

    def __init__(self, ctx: RunContext, step: StepDef) -> None:
        super().__init__(ctx, step)
        self._eval: Any = None

    async def process(self, tag: str) -> None:
        step = self.step
        if self._eval is None:
            self._eval = _evaluator(step.requirements, step.cwl_version)
        values = self.inputs_for(tag)
        loads = set(step.load_contents) | set(step.load_listing)
        if loads:
            values = await asyncio.to_thread(_load_step_inputs, step, values, loads)
        result = dict(values)
        for name, expr in step.expressions.items():
            try:
                result[name] = self._eval.evaluate(expr, values, self_=values.get(name))
            except StreamFlowError:
                raise
            except Exception as exc:  # JavaScript errors surface as many types
                raise WorkflowExecutionError(f"{step.name}: valueFrom of '{name}' failed: {exc}") from exc
        if step.expressions:
            from streamflow.cwl.utils import bus_safe

            result = bus_safe(result)
        puts = [(port, tag, result.get(name)) for name, port in step.outputs.items()]
        await self.put_many(puts, inputs=self.provenance(tag))
        self.completed.add(tag)


def _load_step_inputs(step: ValueFromStep, values: dict[str, Any], names: set[str]) -> dict[str, Any]:
    """``loadContents``/``loadListing`` of a step's inputs (file I/O: run in a thread)."""
    from streamflow.cwl.files import FileProblem, load_step_input

    result = dict(values)
    for name in names:
        try:
            result[name] = load_step_input(values.get(name), contents=name in step.load_contents,
                                           listing=step.load_listing.get(name))
        except FileProblem as exc:
            raise WorkflowExecutionError(f"{step.name}: input '{name}': {exc}") from exc
    return result


class ConditionalStepActor(StepActor):
    """Evaluates ``when``: forwards the inputs, or emits null on the step's outputs."""

    step: ConditionalStep

    def __init__(self, ctx: RunContext, step: StepDef) -> None:
        super().__init__(ctx, step)
        self._eval: Any = None

    def written_ports(self) -> list[str]:
        return list(self.step.outputs.values()) + list(self.step.skip_outputs.values())

    def is_complete(self, tag: str) -> bool:
        passed = list(self.step.outputs.values())
        skipped = list(self.step.skip_outputs.values())
        if passed and all(tag in self.present[p] for p in passed):
            return True
        return bool(skipped) and all(tag in self.present[p] for p in skipped)

    async def process(self, tag: str) -> None:
        step = self.step
        if self._eval is None:
            self._eval = _evaluator(step.requirements, step.cwl_version)
        values = self.inputs_for(tag)
        try:
            verdict = self._eval.evaluate(step.when, values)
        except StreamFlowError:
            raise
        except Exception as exc:
            raise WorkflowExecutionError(f"{step.name}: 'when' failed: {exc}") from exc
        if not isinstance(verdict, bool):
            raise WorkflowExecutionError(
                f"{step.name}: 'when' must evaluate to a boolean, got {type(verdict).__name__} {verdict!r}")
        if verdict:
            puts = [(port, tag, values.get(name)) for name, port in step.outputs.items()]
        else:
            puts = [(port, tag, None) for port in step.skip_outputs.values()]
        await self.put_many(puts, inputs=self.provenance(tag))
        self.completed.add(tag)


class ScatterStepActor(StepActor):
    """Scatters inputs into element tags and emits the sizes for the gathers."""

    step: ScatterStep

    def written_ports(self) -> list[str]:
        return list(self.step.outputs.values()) + list(self.step.size_ports)

    def is_complete(self, tag: str) -> bool:
        return tag in self.present[self.step.size_ports[0]]

    async def process(self, tag: str) -> None:
        step = self.step
        values = self.inputs_for(tag)
        lists: list[list[Any]] = []
        for name in step.scatter:
            value = values.get(name)
            if not isinstance(value, list):
                raise WorkflowExecutionError(
                    f"{step.name}: scatter input '{name}' must be an array, got {type(value).__name__}")
            lists.append(value)
        combos: list[tuple[str, dict[str, Any]]] = []
        sizes: list[list[tuple[str, int]]] = [[] for _ in step.size_ports]
        method = step.method if len(lists) > 1 else "dotproduct"
        if method == "dotproduct":
            lengths = {len(v) for v in lists}
            if len(lengths) > 1:
                raise WorkflowExecutionError(
                    f"{step.name}: dotproduct scatter needs arrays of the same length, got {sorted(lengths)}")
            n = lengths.pop() if lengths else 0
            for i in range(n):
                combos.append((f"{tag}.{i}", {name: lists[k][i] for k, name in enumerate(step.scatter)}))
            sizes[0].append((tag, n))
        elif method == "flat_crossproduct":
            for i, combo in enumerate(itertools.product(*lists)):
                combos.append((f"{tag}.{i}", dict(zip(step.scatter, combo, strict=True))))
            sizes[0].append((tag, math.prod(len(v) for v in lists)))
        else:  # nested_crossproduct: one tag level per scattered input
            prefixes = [tag]
            for level, values_list in enumerate(lists):
                for prefix in prefixes:
                    sizes[level].append((prefix, len(values_list)))
                prefixes = [f"{p}.{i}" for p in prefixes for i in range(len(values_list))]
            for index in itertools.product(*(range(len(v)) for v in lists)):
                element_tag = ".".join([tag, *map(str, index)])
                combos.append((element_tag, {name: lists[k][index[k]] for k, name in enumerate(step.scatter)}))
        puts: list[tuple[str, str, Any]] = []
        for element_tag, scattered in combos:
            for name, port in step.outputs.items():
                puts.append((port, element_tag, scattered[name] if name in scattered else values.get(name)))
        provenance = self.provenance(tag)
        await self.put_many(puts, inputs=provenance)
        # Sizes last, deepest level first: the level-0 size marks the tag complete.
        for level in range(len(step.size_ports) - 1, -1, -1):
            await self.put_many([(step.size_ports[level], t, n) for t, n in sizes[level]], inputs=provenance)
        self.completed.add(tag)


class GatherStepActor(StepActor):
    """Collects scattered tokens into lists, once per size token."""

    step: GatherStep
    SNAPSHOT: ClassVar[dict[str, Any]] = {"children": dict[str, list[str]]}

    def __init__(self, ctx: RunContext, step: StepDef) -> None:
        super().__init__(ctx, step)
        self.children: dict[str, list[str]] = {}  # parent tag -> tags of its scattered tokens

    def on_input(self, port: str, tag: str) -> None:
        if port == self.step.inputs["size"]:
            self.ready[tag] = None
            self.dirty.add(tag)
        else:
            parent = parent_tag(tag, self.step.depth)
            self.children.setdefault(parent, []).append(tag)
            self.dirty.add(parent)

    def is_complete(self, tag: str) -> bool:
        return tag in self.present[self.step.outputs["value"]]

    async def process(self, tag: str) -> None:
        step = self.step
        size = self.tokens[step.inputs["size"]][tag][0]
        values = self.tokens[step.inputs["value"]]
        arrived = self.children.get(tag, [])
        if len(arrived) < int(size):
            return  # not yet: a new token marks the tag dirty again (O(1): no scan per token)
        children = list(dict.fromkeys(arrived))
        if len(children) < int(size):
            return  # a token seen twice (replayed after a restore) counted above
        children.sort(key=_tag_key)
        await self.put(step.outputs["value"], tag, [values[t][0] for t in children],
                       inputs=[values[t][1] for t in children])
        self.completed.add(tag)


class ExecuteStepActor(StepActor):
    """Runs a process per tag as a job, through the Scheduler, DataManager and workers."""

    step: ExecuteStep
    CONCURRENT_TAGS = True  # a scatter makes thousands of tags ready at once: pipeline their requests
    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "requested": dict[str, str],
        "scheduled": dict[str, JobScheduled],
        "staged": dict[str, InputsStaged],
        "requests": dict[str, JobRequested],
        "results": dict[str, JobCompleted],
        "attempts": dict[str, int],
        "abandoned": dict[str, JobAbandoned],
        "started": set[tuple[str, int]],
        "rollbacks": dict[str, int],
    }

    def __init__(self, ctx: RunContext, step: StepDef) -> None:
        super().__init__(ctx, step)
        self._job_prefix = f"{step.id}-"
        self.requested: dict[str, str] = {}  # job -> tag
        self.scheduled: dict[str, JobScheduled] = {}
        self.staged: dict[str, InputsStaged] = {}
        self.requests: dict[str, JobRequested] = {}
        self.results: dict[str, JobCompleted] = {}
        self.attempts: dict[str, int] = {}
        self.retry_at: dict[str, float] = {}
        self.abandoned: dict[str, JobAbandoned] = {}
        self.queued: set[tuple[str, int]] = set()
        self.started: set[tuple[str, int]] = set()
        self.rollbacks: dict[str, int] = {}  # job -> attempt that must restore its lost outputs
        self._eval: Any = None
        self.reuse: dict[tuple[str, str], Any] = ctx.settings.get("reuse", {})
        # A resumed run queues again every job whose result is not recorded: a task of an
        # earlier generation may be lost with the process that held it.
        self.generation: int = int(ctx.settings.get("generation", 0))

    def interested(self, record: Record) -> bool:
        if super().interested(record):
            return True
        agg_id = record.agg_id
        return agg_id is not None and agg_id.startswith(self._job_prefix) and record.aggregate in _JOB_AGGREGATES

    def interest(self) -> Interest | None:
        hint = super().interest()
        assert hint is not None
        return Interest(subjects=hint.subjects, prefixes=((_JOB_AGGREGATES, self._job_prefix),))

    def apply(self, record: Record) -> None:
        body = record.body
        job = getattr(body, "job", None)
        if isinstance(job, str) and job in self.requested:
            self.dirty.add(self.requested[job])
        if isinstance(body, JobRequested) and record.subject == self.subject:
            self.requested[body.job] = body.tag
            self.requests[body.job] = body
            self.attempts.setdefault(body.job, 1)
        elif isinstance(body, JobScheduled):
            self.scheduled[body.job] = body
        elif isinstance(body, InputsStaged):
            self.staged[body.job] = body
        elif isinstance(body, JobCompleted):
            self.results[body.job] = body
        elif isinstance(body, JobReused) and record.subject == self.subject:
            self.requested[body.job] = body.tag
            self.dirty.add(body.tag)
            self.results[body.job] = JobCompleted(job=body.job, outputs=body.outputs)
        elif isinstance(body, JobStarted):
            self.started.add((body.job, body.attempt))
        elif isinstance(body, JobRetryScheduled):
            if body.attempt > self.attempts.get(body.job, 1):
                self.attempts[body.job] = body.attempt
                loop = asyncio.get_event_loop()
                self.retry_at[body.job] = loop.time() + (0 if self.replaying else body.delay)
        elif isinstance(body, JobAbandoned):
            self.abandoned[body.job] = body
        elif isinstance(body, JobRollback):
            self.rollbacks[body.job] = max(self.rollbacks.get(body.job, 0), body.attempt)
        else:
            super().apply(record)

    async def react(self) -> None:
        if self.terminated:
            # A terminated step still owns its jobs: data they produced may be lost later
            # and the FailureManager may ask for them to run again.
            for job, attempt in list(self.rollbacks.items()):
                if job in self.results and attempt > self.results[job].attempt and job in self.requested:
                    await self._queue_rollback(job, self.requested[job], attempt)
            return
        await super().react()

    async def _queue_rollback(self, job: str, tag: str, attempt: int) -> None:
        """Run a completed job again to restore outputs that were lost (same paths)."""
        if (job, attempt) in self.queued:
            return
        scheduled = self.scheduled.get(job)
        request = self.requests.get(job)
        if scheduled is None or request is None:
            return
        staged = self.staged.get(job)
        task = JobTask(run_id=self.ctx.run_id, job=job, step=self.step.id, tag=tag, attempt=attempt,
                       inputs=staged.inputs if staged is not None and staged.inputs is not None else request.inputs,
                       deployment=scheduled.deployment, location=scheduled.location, cores=scheduled.cores,
                       memory=scheduled.memory, generation=self.generation, restore=self.results[job].outputs,
                       paths=staged.paths if staged is not None else {}, hostnames=scheduled.hostnames)
        await self.ctx.log.publish_task(self._task_subject(scheduled.deployment), encode_task(task),
                                        f"{self.ctx.run_id}.{job}.{attempt}.g{self.generation}")
        self.queued.add((job, attempt))

    def _task_subject(self, deployment: str) -> str:
        """Where this host queues a deployment's tasks (``task_routes``: a private worker pool)."""
        routes: dict[str, str] = self.ctx.settings.get("task_routes") or {}
        return task_subject(routes.get(deployment, deployment), self.ctx.run_id)

    def _wake_tag(self, tag: str) -> None:
        self.dirty.add(tag)
        self.wake()

    def quiescent(self) -> bool:
        finished = len(self.results) + sum(1 for j in self.abandoned if j not in self.results)
        return finished >= len(self.requested)

    def is_complete(self, tag: str) -> bool:
        job = job_id(self.step.id, tag)
        if job not in self.results:
            return False
        return all(tag in self.present[p] for p in self.step.outputs.values())

    def _hardware(self, inputs: dict[str, Any]) -> tuple[float, float]:
        for req in self.step.requirements:
            if getattr(req, "class_", None) == "ResourceRequirement":
                if self._eval is None:
                    self._eval = _evaluator(self.step.requirements, self.step.cwl_version)

                def _value(*names: str, _req: Any = req) -> float | None:
                    for name in names:
                        raw = getattr(_req, name, None)
                        if raw is not None:
                            result = self._eval.evaluate(raw, inputs)
                            return float(result) if result is not None else None
                    return None

                cores = _value("coresMin", "coresMax") or 1.0
                ram = _value("ramMin", "ramMax") or 0.0
                return cores, ram
        return 1.0, 0.0

    async def process(self, tag: str) -> None:
        job = job_id(self.step.id, tag)
        if job in self.abandoned:
            reason = self.abandoned[job].reason
            await self.fail(f"{self.step.name}: job {job} failed: {reason}", tag=tag, job=job)
            return
        rollback = self.rollbacks.get(job, 0)
        if job in self.results and rollback > self.results[job].attempt:
            await self._queue_rollback(job, tag, rollback)
            return
        if job in self.results:
            result = self.results[job]
            outputs = result.outputs
            puts = [(port, tag, outputs.get(name)) for name, port in self.step.outputs.items()]
            await self.put_many(puts, inputs=self.provenance(tag), job=job)
            self.completed.add(tag)
            return
        if job not in self.requested:
            inputs = self.inputs_for(tag)
            reused = self.reuse.get((self.step.name, tag))
            if reused is not None and reused.matches(inputs):
                event = JobReused(job=job, tag=tag, from_run=reused.run_id, from_job=reused.job,
                                  outputs=reused.outputs, inputs=inputs)
                await self.append("step", self.step.id, event, key=tag)
                self.requested[job] = tag
                self.results[job] = JobCompleted(job=job, outputs=reused.outputs)
                await self.process(tag)
                return
            try:
                cores, memory = self._hardware(inputs)
            except StreamFlowError:
                raise
            except Exception as exc:
                raise WorkflowExecutionError(f"{self.step.name}: ResourceRequirement failed: {exc}") from exc
            request = JobRequested(job=job, step=self.step.id, tag=tag, inputs=inputs,
                                   target=self.step.target, cores=cores, memory=memory,
                                   targets=self.step.targets if len(self.step.targets) > 1 else [],
                                   service=self.step.service, locations=self.step.locations,
                                   filters=self.step.filters)
            await self.append("step", self.step.id, request, key=tag)
            self.requested[job] = tag
            # The log's echo may have been folded already (before the append's ack came
            # back): keep that copy, the one the scheduler and data manager hold too.
            self.requests.setdefault(job, request)
            self.attempts.setdefault(job, 1)
            return
        staged = self.staged.get(job)
        scheduled = self.scheduled.get(job)
        if staged is None or scheduled is None:
            return
        attempt = self.attempts.get(job, 1)
        if (job, attempt) in self.queued:
            return
        due = self.retry_at.get(job)
        if due is not None:
            loop = asyncio.get_running_loop()
            if loop.time() < due:
                loop.call_at(due, self._wake_tag, tag)
                return
        request = self.requests[job]
        task = JobTask(run_id=self.ctx.run_id, job=job, step=self.step.id, tag=tag, attempt=attempt,
                       inputs=staged.inputs if staged.inputs is not None else request.inputs,
                       deployment=scheduled.deployment, location=scheduled.location,
                       cores=scheduled.cores, memory=scheduled.memory, generation=self.generation,
                       paths=staged.paths, hostnames=scheduled.hostnames)
        await self.ctx.log.publish_task(self._task_subject(scheduled.deployment), encode_task(task),
                                        f"{self.ctx.run_id}.{job}.{attempt}.g{self.generation}")
        self.queued.add((job, attempt))


_KINDS: dict[str, type[StepActor]] = {
    "input": InputStepActor,
    "transform": TransformStepActor,
    "value_from": ValueFromStepActor,
    "conditional": ConditionalStepActor,
    "scatter": ScatterStepActor,
    "gather": GatherStepActor,
    "execute": ExecuteStepActor,
}


def make_step_actor(ctx: RunContext, step: StepDef) -> StepActor:
    """Build the actor for a step of any kind."""
    try:
        cls = _KINDS[step.kind]
    except KeyError:
        raise StreamFlowError(f"unknown step kind {step.kind!r} for {step.name}") from None
    return cls(ctx, step)
