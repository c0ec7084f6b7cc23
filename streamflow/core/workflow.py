"""Workflow model: statuses, tokens, jobs, commands and the actor-facing Step/Port contracts.

In this engine steps and ports are actors that exchange msgspec-encoded tokens over NATS, so the
value types here (:class:`Token`, :class:`Job`, :class:`CommandOutput`) are immutable msgspec
structs that travel in events, and :class:`Step`, :class:`Port`, :class:`Workflow` and
:class:`Executor` describe what an actor implementation must offer.

Tags are dotted integer strings (``"0"``, ``"0.2"``, ``"0.2.1"``): a scatter appends ``.i``, a
gather strips the last component(s). See :func:`compare_tags`, :func:`get_tag` and
:func:`parent_tag`.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext

__all__ = [
    "Command",
    "CommandOutput",
    "Executor",
    "Job",
    "Port",
    "Status",
    "Step",
    "TerminationToken",
    "Token",
    "Workflow",
    "compare_tags",
    "get_tag",
    "parent_tag",
]


class Status(enum.IntEnum):
    """Lifecycle of a step, a job or a workflow (values are StreamFlow's, and are persisted)."""

    WAITING = 0  # created; waiting for its inputs
    FIREABLE = 1  # has a full set of inputs for a tag; waiting for a location
    RUNNING = 2  # its command (or its children) is executing
    SKIPPED = 3  # a condition was false; produced no outputs (terminal)
    COMPLETED = 4  # finished successfully (terminal)
    FAILED = 5  # finished with an error that was not recovered (terminal)
    CANCELLED = 6  # stopped because the run was cancelled (terminal)
    ROLLBACK = 7  # its outputs were lost; it is being re-executed by the failure manager
    RECOVERY = 8  # the failure manager is deciding / preparing a retry
    RECOVERED = 9  # a recovery run finished and produced the missing outputs (terminal)

    @property
    def terminal(self) -> bool:
        """Whether no further transition can follow this status."""
        return self in _TERMINAL


_TERMINAL = frozenset({Status.SKIPPED, Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.RECOVERED})


def _tag_parts(tag: str) -> list[int]:
    try:
        return [int(part) for part in tag.split(".")]
    except ValueError as exc:
        raise ValueError(f"invalid tag {tag!r}: expected dotted integers such as '0.1.2'") from exc


def compare_tags(a: str, b: str) -> int:
    """Compare two tags: shorter tags first, then component by component numerically.

    Args:
        a: the first tag.
        b: the second tag.

    Returns:
        A negative number if ``a`` sorts before ``b``, zero if they are equal, a positive number
        otherwise (``"0.2" < "0.10" < "0.1.0"``).

    Raises:
        ValueError: if a tag is not made of dotted integers.
    """
    pa, pb = _tag_parts(a), _tag_parts(b)
    if len(pa) != len(pb):
        return -1 if len(pa) < len(pb) else 1
    return (pa > pb) - (pa < pb)


def get_tag(tokens: Iterable[Token]) -> str:
    """Return the tag a job built from ``tokens`` should carry: the longest (deepest) tag.

    Args:
        tokens: the input tokens of a job.

    Returns:
        The tag with the most components; ``"0"`` when ``tokens`` is empty. On a tie, the first one.
    """
    best: str | None = None
    depth = 0
    for token in tokens:
        if (d := len(token.tag.split("."))) > depth:
            best, depth = token.tag, d
    return "0" if best is None else best


def parent_tag(tag: str, depth: int = 1) -> str:
    """Strip the last ``depth`` components of ``tag`` (what a gather does).

    Args:
        tag: a dotted tag such as ``"0.3.1"``.
        depth: how many components to strip (at least 1).

    Returns:
        The parent tag, e.g. ``parent_tag("0.3.1") == "0.3"``.

    Raises:
        ValueError: if ``depth`` < 1 or the tag has no ancestor that deep.
    """
    parts = tag.split(".")
    _tag_parts(tag)
    if depth < 1 or depth >= len(parts):
        raise ValueError(f"tag {tag!r} has no parent at depth {depth}")
    return ".".join(parts[:-depth])


class Token(msgspec.Struct, frozen=True):
    """An immutable value flowing through a port.

    Attributes:
        value: the payload (JSON-like data; big values are files tracked by the DataManager).
        tag: the dotted tag locating the token in the scatter/loop hierarchy.
        recoverable: whether the value can be re-obtained without re-running its producer.
    """

    value: Any
    tag: str = "0"
    recoverable: bool = False

    def retag(self, tag: str) -> Token:
        """Return a copy of this token with another tag."""
        return msgspec.structs.replace(self, tag=tag)

    def update(self, value: Any) -> Token:
        """Return a copy of this token with another value and the same tag."""
        return msgspec.structs.replace(self, value=value)


class TerminationToken(Token, frozen=True):
    """The last token of a port: no further token follows. ``value`` is the producer's final status."""

    value: Status = Status.COMPLETED


class Job(msgspec.Struct, frozen=True):
    """One execution of a step for one tag.

    Attributes:
        name: unique job name, ``<step name>/<tag>``.
        run_id: the run this job belongs to.
        step: the step name.
        tag: the tag of its inputs.
        inputs: input name → value (or token) for this tag.
        input_directory: where its inputs are staged on the target, once known.
        output_directory: where its outputs are written on the target, once known.
        tmp_directory: scratch directory on the target, once known.
        attempt: attempt number, starting at 1; each retry runs in fresh directories.
    """

    name: str
    run_id: str
    step: str
    tag: str
    inputs: dict[str, Any] = msgspec.field(default_factory=dict)
    input_directory: str | None = None
    output_directory: str | None = None
    tmp_directory: str | None = None
    attempt: int = 1


class CommandOutput(msgspec.Struct, frozen=True):
    """What a command produced, and how it ended."""

    value: Any
    status: Status

    def update(self, value: Any) -> CommandOutput:
        """Return a copy with another value and the same status."""
        return CommandOutput(value, self.status)


class Command(ABC):
    """What an execute step runs for each job.

    Args:
        step: the step this command belongs to.
    """

    def __init__(self, step: Step) -> None:
        self.step = step

    @abstractmethod
    async def execute(self, job: Job) -> CommandOutput:
        """Run the command for ``job``.

        Args:
            job: the job, with its directories already set.

        Returns:
            The command's output and final status (COMPLETED, FAILED or SKIPPED).

        Raises:
            streamflow.errors.JobFailedError: if the command could not be completed.
        """


class Port(ABC):
    """A named, ordered, append-only channel of tokens between steps.

    A port owns its token log: producers ``put`` tokens, and the port ends with one
    :class:`TerminationToken` (via :meth:`terminate`). Each consumer reads the whole log from the
    start, in order, at its own pace.

    Args:
        workflow: the workflow the port belongs to.
        name: the port name, unique in the workflow.
    """

    def __init__(self, workflow: Workflow, name: str) -> None:
        self.workflow = workflow
        self.name = name

    @abstractmethod
    async def put(self, token: Token) -> None:
        """Append ``token`` to the port.

        Raises:
            streamflow.errors.WorkflowExecutionError: if the port is already terminated.
        """

    @abstractmethod
    async def get(self, consumer: str) -> Token:
        """Return the next token for ``consumer``, waiting for it if needed.

        Args:
            consumer: the consumer name (usually the consuming step); each has its own cursor.

        Returns:
            The next token; a :class:`TerminationToken` once the port is terminated and drained.
        """

    @abstractmethod
    async def terminate(self, status: Status) -> None:
        """Close the port with ``status``: append a :class:`TerminationToken`. Idempotent."""


class Step(ABC):
    """A node of the workflow graph; an actor that turns input tokens into jobs and outputs.

    Args:
        workflow: the workflow the step belongs to.
        name: the step name (a POSIX-like path such as ``/main/step``).

    Attributes:
        input_ports: local input name → port name.
        output_ports: local output name → port name.
        status: the current status.
    """

    def __init__(self, workflow: Workflow, name: str) -> None:
        self.workflow = workflow
        self.name = name
        self.input_ports: dict[str, str] = {}
        self.output_ports: dict[str, str] = {}
        self.status = Status.WAITING

    def add_input_port(self, name: str, port: Port) -> None:
        """Connect ``port`` as the input called ``name``."""
        self.input_ports[name] = port.name

    def add_output_port(self, name: str, port: Port) -> None:
        """Connect ``port`` as the output called ``name``."""
        self.output_ports[name] = port.name

    def get_input_ports(self) -> dict[str, Port]:
        """Return the connected input ports by local name."""
        return {k: self.workflow.ports[v] for k, v in self.input_ports.items()}

    def get_output_ports(self) -> dict[str, Port]:
        """Return the connected output ports by local name."""
        return {k: self.workflow.ports[v] for k, v in self.output_ports.items()}

    @abstractmethod
    async def run(self) -> None:
        """Consume input tokens until every input port terminates, then terminate."""

    @abstractmethod
    async def terminate(self, status: Status) -> None:
        """Reach the terminal ``status`` and terminate every output port with it. Idempotent."""


class Workflow(ABC):
    """A workflow graph: named steps and ports, with the workflow's own inputs and outputs.

    Args:
        context: the StreamFlow context.
        config: the workflow configuration (from ``streamflow.yml``).
        name: the workflow name; unique within a run.

    Attributes:
        steps: step name → step.
        ports: port name → port.
        input_ports: workflow input name → port name.
        output_ports: workflow output name → port name.
    """

    def __init__(self, context: StreamFlowContext, config: Mapping[str, Any], name: str) -> None:
        self.context = context
        self.config = config
        self.name = name
        self.steps: dict[str, Step] = {}
        self.ports: dict[str, Port] = {}
        self.input_ports: dict[str, str] = {}
        self.output_ports: dict[str, str] = {}

    def add_step(self, step: Step) -> None:
        """Add ``step`` to the graph.

        Raises:
            streamflow.errors.WorkflowDefinitionError: if a step with that name exists.
        """
        from streamflow.errors import WorkflowDefinitionError

        if step.name in self.steps:
            raise WorkflowDefinitionError(f"step {step.name!r} already exists in workflow {self.name!r}")
        self.steps[step.name] = step

    def add_port(self, port: Port) -> None:
        """Add ``port`` to the graph.

        Raises:
            streamflow.errors.WorkflowDefinitionError: if a port with that name exists.
        """
        from streamflow.errors import WorkflowDefinitionError

        if port.name in self.ports:
            raise WorkflowDefinitionError(f"port {port.name!r} already exists in workflow {self.name!r}")
        self.ports[port.name] = port

    def get_input_port(self, name: str) -> Port:
        """Return the port of the workflow input ``name``."""
        return self.ports[self.input_ports[name]]

    def get_output_port(self, name: str) -> Port:
        """Return the port of the workflow output ``name``."""
        return self.ports[self.output_ports[name]]

    @abstractmethod
    async def save(self) -> None:
        """Record the workflow graph (steps, ports, dependencies) in the context's database."""


class Executor(ABC):
    """Runs a workflow to completion.

    Args:
        workflow: the workflow to run.
    """

    def __init__(self, workflow: Workflow) -> None:
        self.workflow = workflow

    @abstractmethod
    async def run(self) -> MutableMapping[str, Any]:
        """Run every step and return the workflow outputs (output name → value).

        Raises:
            streamflow.errors.WorkflowExecutionError: if the workflow failed.
        """

    @abstractmethod
    async def close(self) -> None:
        """Stop the run and release its resources. Idempotent."""

    @abstractmethod
    async def closed(self) -> bool:
        """Whether :meth:`close` has completed."""
