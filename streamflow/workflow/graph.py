"""The dataflow graph a run executes: steps, ports and what each step kind does.

A front end (the CWL translator) turns a document into a :class:`WorkflowGraph`. The graph
is *deterministic*: translating the same document twice gives the same step and port ids,
so every actor host can rebuild it from the run's ``RunSubmitted`` event without the graph
itself travelling over the bus. Ids are short (``s12``, ``p40``) so they can be used as
NATS subject tokens; names are the human paths (``/main/step/in``).

Tokens flow along ports, each with a *tag*: a dotted string of integers. The root tag is
``"0"``; a scatter appends ``.i``; a gather strips the last component. Every step kind is
defined per tag:

* a step with input ports *fires* for a tag once every input port has a token with that
  tag; the input object for that firing is ``constants`` overlaid with the tokens' values;
* a step *terminates* once all its input ports have terminated and its own work is done;
  then it terminates its output ports. A port terminates once all its producers have.

Step kinds (``StepDef.kind``):

``input``      :class:`InputStep` — emits one token, tag ``"0"``, with the value of a
               workflow input (already validated) on its single output port ``"value"``.
``execute``    :class:`ExecuteStep` — runs ``process`` (a CWL CommandLineTool or
               ExpressionTool object) as one job per tag, on a location chosen by the
               Scheduler; emits each output parameter's value on ``outputs[name]``.
``transform``  :class:`TransformStep` — per tag, builds one value from several sources:
               link merge, ``pickValue``, then ``default`` when the result is null.
``value_from`` :class:`ValueFromStep` — per tag, loads ``contents``/listings the step
               inputs ask for (``loadContents``/``loadListing``), evaluates each
               ``valueFrom`` with ``self`` = that input's value and ``inputs`` = all the
               step's inputs, then emits every input (transformed or not) on the port of
               the same name.
``scatter``    :class:`ScatterStep` — per parent tag, scatters the ``scatter`` inputs
               (dot product, nested or flat cross product) and broadcasts the others;
               emits every input on its output port with the new tags, plus one *size*
               token per level on ``size_ports`` for the gathers.
``conditional`` :class:`ConditionalStep` — per tag, evaluates ``when``; true: forwards
               every input on the port of the same name; false: emits ``null`` on every
               port of ``skip_outputs`` (the conditioned step's output ports).
``gather``     :class:`GatherStep` — collects the tokens whose tag has ``depth`` more
               components than a size token's tag, and emits them as a list, ordered by
               their last tag component, once there are as many as the size says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ConditionalStep",
    "ExecuteStep",
    "GatherStep",
    "InputStep",
    "PortDef",
    "ScatterMethod",
    "ScatterStep",
    "StepDef",
    "TransformStep",
    "ValueFromStep",
    "WorkflowGraph",
]

ScatterMethod = Literal["dotproduct", "nested_crossproduct", "flat_crossproduct"]
LinkMerge = Literal["merge_nested", "merge_flattened"]
PickValue = Literal["first_non_null", "the_only_non_null", "all_non_null"]


@dataclass
class PortDef:
    """A port: an ordered, replayable log of tokens.

    Attributes:
        id: short id, unique in the graph (``p<n>``).
        name: human path, e.g. ``/main/step1/out``.
    """

    id: str
    name: str


@dataclass
class StepDef:
    """Fields shared by every step kind.

    Attributes:
        id: short id, unique in the graph (``s<n>``).
        name: human path, e.g. ``/main/step1`` (CWL step paths, ``/`` is the root).
        inputs: local input name -> port id.
        outputs: local output name -> port id.
        constants: input values that come from no port (e.g. a step input with only a
            ``default``); overlaid below the port values when the step fires.
    """

    id: str
    name: str
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)

    kind: str = field(init=False, default="")


@dataclass
class InputStep(StepDef):
    """Injects a workflow input value (tag ``"0"``) on ``outputs["value"]``."""

    value: Any = None
    kind: str = field(init=False, default="input")


@dataclass
class ExecuteStep(StepDef):
    """Runs a process once per tag as a job.

    Attributes:
        process: the CWL process object (cwl_utils v1.2 CommandLineTool/ExpressionTool).
        requirements: effective requirements (inherited ones overridden by the process's).
        hints: effective hints.
        cwl_version: the document's original ``cwlVersion``.
        target: name of the deployment the step is bound to (``__LOCAL__`` by default).
        container: how its DockerRequirement runs (``none``, ``auto``, ``docker``,
            ``podman``; None: ``STREAMFLOW_CONTAINER_ENGINE``), from ``streamflow.yml``.
        targets: every deployment the step is bound to, in order of preference (empty:
            ``[target]``), from ``streamflow.yml``.
        service: the service of its (first) target, if any.
        locations: how many locations each job needs at once (co-allocation).
        filters: names of the binding filters that order ``targets`` for each job.
    """

    process: Any = None
    requirements: list[Any] = field(default_factory=list)
    hints: list[Any] = field(default_factory=list)
    cwl_version: str = "v1.2"
    target: str = "__LOCAL__"
    container: str | None = None
    targets: list[str] = field(default_factory=list)
    service: str | None = None
    locations: int = 1
    filters: list[str] = field(default_factory=list)
    kind: str = field(init=False, default="execute")


@dataclass
class TransformStep(StepDef):
    """Builds one value per tag from ``inputs`` (keys are ``"0"``, ``"1"``, ... in source order).

    Attributes:
        link_merge: how to combine several sources; ``None`` with one source means the
            value passes as is.
        pick_value: CWL ``pickValue`` applied after merging.
        has_default: whether ``default`` applies when the value is null.
        default: the default value.
        output: the single output is ``outputs["value"]``.
    """

    link_merge: LinkMerge | None = None
    pick_value: PickValue | None = None
    has_default: bool = False
    default: Any = None
    kind: str = field(init=False, default="transform")


@dataclass
class ValueFromStep(StepDef):
    """Evaluates ``valueFrom`` expressions per tag.

    Attributes:
        expressions: input name -> expression (string or object with expressions).
        requirements: effective requirements of the workflow step (InlineJavascript ...).
        cwl_version: the document's original ``cwlVersion``.
        load_contents: inputs whose File values get ``contents`` (the step input's
            ``loadContents``) before any expression is evaluated.
        load_listing: input name -> ``loadListing`` of its Directory values, likewise.
    """

    expressions: dict[str, Any] = field(default_factory=dict)
    requirements: list[Any] = field(default_factory=list)
    cwl_version: str = "v1.2"
    load_contents: list[str] = field(default_factory=list)
    load_listing: dict[str, str] = field(default_factory=dict)
    kind: str = field(init=False, default="value_from")


@dataclass
class ScatterStep(StepDef):
    """Scatters some inputs and broadcasts the others.

    Attributes:
        scatter: names of the scattered inputs, in the document's order.
        method: the scatter method (one scattered input is always a dot product).
        size_ports: one port id per nesting level (one for dotproduct and
            flat_crossproduct; ``len(scatter)`` for nested_crossproduct). Level ``k``
            carries, for every tag at that level, how many elements it has.
    """

    scatter: list[str] = field(default_factory=list)
    method: ScatterMethod = "dotproduct"
    size_ports: list[str] = field(default_factory=list)
    kind: str = field(init=False, default="scatter")


@dataclass
class ConditionalStep(StepDef):
    """Evaluates ``when`` per tag.

    Attributes:
        when: the expression.
        skip_outputs: output name -> port id receiving ``null`` when false.
        requirements: effective requirements of the workflow step.
        cwl_version: the document's original ``cwlVersion``.
    """

    when: str = ""
    skip_outputs: dict[str, str] = field(default_factory=dict)
    requirements: list[Any] = field(default_factory=list)
    cwl_version: str = "v1.2"
    kind: str = field(init=False, default="conditional")


@dataclass
class GatherStep(StepDef):
    """Gathers scattered tokens back into lists.

    ``inputs`` has ``"value"`` (the scattered tokens) and ``"size"`` (the size tokens of
    the matching scatter level); the list goes to ``outputs["value"]``.

    Attributes:
        depth: how many tag components separate the values from the size tokens (1).
    """

    depth: int = 1
    kind: str = field(init=False, default="gather")


@dataclass
class WorkflowGraph:
    """A translated workflow.

    Attributes:
        name: the process's name (file name without extension by default).
        ports: port id -> port.
        steps: step id -> step, in a topological-friendly translation order.
        inputs: workflow input name -> port id (the ``input`` steps' outputs).
        outputs: workflow output name -> port id (the run's results, tag ``"0"``).
        output_types: workflow output name -> declared CWL type (for validation).
    """

    name: str
    ports: dict[str, PortDef] = field(default_factory=dict)
    steps: dict[str, StepDef] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    output_types: dict[str, Any] = field(default_factory=dict)

    def producers(self, port_id: str) -> list[str]:
        """Return the ids of the steps that write on ``port_id``."""
        return self.producers_by_port().get(port_id, [])

    def producers_by_port(self) -> dict[str, list[str]]:
        """Port id -> the ids of the steps that write on it (in step order), in one pass over the steps."""
        result: dict[str, list[str]] = {}
        for step in self.steps.values():
            written = list(step.outputs.values())
            if isinstance(step, ConditionalStep):
                written.extend(step.skip_outputs.values())
            if isinstance(step, ScatterStep):
                written.extend(step.size_ports)
            for port_id in dict.fromkeys(written):
                result.setdefault(port_id, []).append(step.id)
        return result

    def consumers(self, port_id: str) -> list[str]:
        """Return the ids of the steps that read ``port_id``."""
        return [s.id for s in self.steps.values() if port_id in s.inputs.values()]

    def new_port(self, name: str) -> PortDef:
        """Create and register a port with the next free id."""
        port = PortDef(id=f"p{len(self.ports)}", name=name)
        self.ports[port.id] = port
        return port

    def add_step(self, step: StepDef) -> StepDef:
        """Register ``step`` (its id must be unique)."""
        if step.id in self.steps:
            raise ValueError(f"duplicate step id {step.id}")
        self.steps[step.id] = step
        return step

    def next_step_id(self) -> str:
        """Return the next free step id."""
        return f"s{len(self.steps)}"
