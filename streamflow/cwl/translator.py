"""Translate a loaded CWL v1.2 process into a :class:`~streamflow.workflow.graph.WorkflowGraph`.

The translation follows the CWL v1.2 order of operations for a workflow step input: link
merge and ``pickValue`` over its sources, then ``default`` when the value is null, then
``scatter``, then ``valueFrom``, then ``when``, then the run. Each of these becomes a step
kind of the graph (``transform``, ``scatter``, ``value_from``, ``conditional``), and only
where the document asks for it. Subworkflows are flattened: their steps join the graph
under the parent step's path (``/sub/inner``), wired to the parent step's prepared ports.

Names are CWL step paths as in StreamFlow's ``streamflow.yml`` bindings: the root is ``/``,
workflow steps are ``/step``, nested ones ``/sub/inner``. Ids come from the graph's
counters in a fixed traversal order (inputs, then steps in dependency order with ties in
document order, then outputs), so the same document always gives the same ids.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import cwl_utils.parser.cwl_v1_2 as cwl

from streamflow.cwl.tool import resolve_requirements
from streamflow.cwl.types import SchemaIndex, inline_named
from streamflow.cwl.utils import Requirements, bus_safe, plain, shortname
from streamflow.errors import UnsupportedRequirementError, WorkflowDefinitionError
from streamflow.workflow.graph import (
    ConditionalStep,
    ExecuteStep,
    GatherStep,
    InputStep,
    LinkMerge,
    PickValue,
    ScatterMethod,
    ScatterStep,
    TransformStep,
    ValueFromStep,
    WorkflowGraph,
)

__all__ = ["JOB_REQUIREMENTS", "LOCAL_TARGET", "RUN_CONTAINER", "root_requirements", "translate"]

LOCAL_TARGET = "__LOCAL__"
"""The deployment a step runs on when no binding names another."""

_LINK_MERGE: dict[str, LinkMerge] = {"merge_nested": "merge_nested", "merge_flattened": "merge_flattened"}
_PICK_VALUE: dict[str, PickValue] = {
    "first_non_null": "first_non_null",
    "the_only_non_null": "the_only_non_null",
    "all_non_null": "all_non_null",
}
_SCATTER_METHODS: dict[str, ScatterMethod] = {
    "dotproduct": "dotproduct",
    "nested_crossproduct": "nested_crossproduct",
    "flat_crossproduct": "flat_crossproduct",
}


@dataclass(frozen=True)
class _Const:
    """A value known at translation time (a default, or an input nobody connects)."""

    value: Any


_Source = str | _Const
"""Where a value comes from: a port id, or a constant."""


def translate(
    process: Any,
    *,
    cwl_version: str,
    name: str | None = None,
    job_order: dict[str, Any] | None = None,
    bindings: Callable[[str], str] | None = None,
) -> WorkflowGraph:
    """Translate a CWL process into a workflow graph.

    Args:
        process: a cwl_utils v1.2 ``CommandLineTool``, ``ExpressionTool`` or ``Workflow``.
        cwl_version: the document's original ``cwlVersion``, recorded in every step.
        name: the graph's name; defaults to the process file's name without extension.
        job_order: the validated root inputs; a missing or null input takes its default.
        bindings: maps a step path (``/``, ``/step``, ``/sub/inner``) to the name of the
            deployment it runs on; defaults to :data:`LOCAL_TARGET` everywhere.

    Returns:
        The graph, with ``inputs``/``outputs`` keyed by the process's parameter names.

    Raises:
        WorkflowDefinitionError: the workflow is inconsistent (unknown source, scatter over
            an unknown input, a required input left unconnected, a dependency cycle, ...);
            the message names the file, the step and the field.
        UnsupportedRequirementError: the process (or a step's run) is an ``Operation`` or
            not a CWL v1.2 process.
    """
    graph = WorkflowGraph(name=name or _default_name(process))
    translator = _Translator(graph, cwl_version, bindings or (lambda _path: LOCAL_TARGET))
    translator.translate_root(process, job_order or {})
    container = (job_order or {}).get(RUN_CONTAINER)
    if isinstance(container, str):
        for step in graph.steps.values():
            if isinstance(step, ExecuteStep):
                step.container = container
    return graph


JOB_REQUIREMENTS = "cwl:requirements"
"""The job-order key holding extra requirements for the root process (a list of dicts)."""

RUN_CONTAINER = "streamflow:container"
"""The recorded-inputs key holding the run's container choice (``none`` for ``--no-container``).

Like :data:`JOB_REQUIREMENTS`, it stays in the run's recorded inputs so that every host
rebuilding the graph (resume, agents, the runner daemon's pool) runs the tools the same way.
"""


def root_requirements(process: Any, job_order: dict[str, Any] | None) -> tuple[list[Any], list[Any]]:
    """Return the effective requirements and hints of the root process.

    The requirements listed under ``cwl:requirements`` in the job order override the
    process's own of the same class (and are added when it has none); they are inherited by
    every step like the process's own.
    """
    requirements, hints = resolve_requirements(process, [], [])
    extra = (job_order or {}).get(JOB_REQUIREMENTS)
    if extra:
        requirements, _ = resolve_requirements({"requirements": list(extra)}, requirements, [])
    return requirements, hints


def _default_name(process: Any) -> str:
    """Return the file name of ``process`` without its extension (``process`` if unknown)."""
    uri = str(getattr(process, "id", "") or "")
    if uri.startswith("_:") or not uri:
        return "process"
    path = unquote(urlsplit(uri.split("#", 1)[0]).path)
    stem = posixpath.splitext(posixpath.basename(path))[0]
    return stem or "process"


def _document(obj: Any) -> str:
    """Return the file a cwl_utils object comes from (for error messages)."""
    options = getattr(obj, "loadingOptions", None)
    fileuri = getattr(options, "fileuri", None)
    if fileuri:
        return unquote(urlsplit(str(fileuri)).path) or str(fileuri)
    uri = str(getattr(obj, "id", "") or "")
    return unquote(urlsplit(uri.split("#", 1)[0]).path) or "<document>"


def _as_list(value: Any) -> list[Any]:
    """Return ``value`` as a list (``None`` -> ``[]``, a scalar -> ``[scalar]``)."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _fragment(uri: str) -> str:
    """Return the fragment of an identifier (the whole string if it has none)."""
    return uri.split("#", 1)[1] if "#" in uri else uri


def _is_optional(type_: Any) -> bool:
    """Return whether a CWL type accepts null (or ``Any``, which runners may leave unset)."""
    view = plain(type_)
    if isinstance(view, str):
        return view in ("null", "Any") or view.endswith("?")
    if isinstance(view, list):
        return any(_is_optional(t) for t in view)
    return False


class _Translator:
    """Holds the graph under construction and the per-translation caches."""

    def __init__(self, graph: WorkflowGraph, cwl_version: str, bindings: Callable[[str], str]) -> None:
        self.graph = graph
        self.cwl_version = cwl_version
        self._versions: dict[int, str] = {}  # id(process loaded from its own file) -> cwlVersion
        self.bindings = bindings
        self._loaded: dict[str, Any] = {}
        self._stack: list[str] = []

    # -- root ---------------------------------------------------------------------------

    def translate_root(self, process: Any, job_order: dict[str, Any]) -> None:
        """Translate the root process: input steps, then its body, then the outputs."""
        self._check_class(process, "the root process")
        requirements, hints = root_requirements(process, job_order)
        sources: dict[str, _Source] = {}
        for param in process.inputs:
            input_name = shortname(param.id)
            port = self.graph.new_port(f"/{input_name}")
            value = job_order.get(input_name)
            if value is None and param.default is not None:
                value = bus_safe(plain(param.default))
            step = InputStep(
                id=self.graph.next_step_id(),
                name=f"/__input__/{input_name}",
                outputs={"value": port.id},
                value=value,
            )
            self.graph.add_step(step)
            self.graph.inputs[input_name] = port.id
            sources[input_name] = port.id
        if isinstance(process, cwl.Workflow):
            outputs = self._workflow(process, "", sources, requirements, hints)
        else:
            wanted = [shortname(o.id) for o in process.outputs]
            outputs = dict(self._execute(process, "/", "/", sources, wanted, requirements, hints))
        # The final output check has only the types: give it SchemaDefRequirement's definitions.
        schema_index = SchemaIndex(Requirements(requirements, hints),
                                   [{"type": plain(p.type_)} for p in [*process.inputs, *process.outputs]])
        for param in process.outputs:
            output_name = shortname(param.id)
            self.graph.outputs[output_name] = self._materialise(outputs[output_name], f"/{output_name}")
            self.graph.output_types[output_name] = inline_named(plain(param.type_), schema_index)

    # -- process kinds ------------------------------------------------------------------

    def _check_class(self, process: Any, where: str) -> None:
        if isinstance(process, cwl.Operation):
            raise UnsupportedRequirementError(
                f"{_document(process)}: {where} is an Operation, which cannot be executed"
            )
        if not isinstance(process, cwl.Workflow | cwl.CommandLineTool | cwl.ExpressionTool):
            raise UnsupportedRequirementError(
                f"{where}: expected a CWL v1.2 CommandLineTool, ExpressionTool or Workflow, "
                f"got {type(process).__module__}.{type(process).__name__}"
            )

    def _load_run(self, step: Any, workflow: Any) -> Any:
        """Return the process a step runs (embedded, or loaded from its URI once)."""
        run = step.run
        if not isinstance(run, str):
            return run
        cached = self._loaded.get(run)
        if cached is not None:
            return cached
        from streamflow.cwl.loader import load_document

        try:
            document = load_document(run)
            loaded = document.process
            self._versions[id(loaded)] = document.cwl_version
        except WorkflowDefinitionError as exc:
            raise WorkflowDefinitionError(
                f"{_document(workflow)}: step '{shortname(step.id)}' field 'run': cannot load {run}: {exc}"
            ) from exc
        self._loaded[run] = loaded
        return loaded

    def _execute(
        self,
        process: Any,
        path: str,
        port_prefix: str,
        sources: dict[str, _Source],
        wanted: list[str],
        requirements: list[Any],
        hints: list[Any],
    ) -> dict[str, str]:
        """Add the ExecuteStep of a tool; return output name -> port id for ``wanted``."""
        declared = [shortname(p.id) for p in process.inputs]
        step = ExecuteStep(
            id=self.graph.next_step_id(),
            name=path,
            process=process,
            requirements=requirements,
            hints=hints,
            cwl_version=self._versions.get(id(process), self.cwl_version),
            target=self.bindings(path),
        )
        for input_name in declared:
            if input_name not in sources:
                continue
            source = sources[input_name]
            if isinstance(source, _Const):
                step.constants[input_name] = source.value
            else:
                step.inputs[input_name] = source
        for input_name, source in sources.items():
            # A step input the tool does not declare still gates the job: the step waits for
            # it (e.g. ``wait: other/out`` to order an in-place update); the tool ignores it.
            if input_name not in step.inputs and input_name not in step.constants and isinstance(source, str):
                step.inputs[input_name] = source
        for output_name in wanted:
            step.outputs[output_name] = self.graph.new_port(f"{port_prefix.rstrip('/')}/{output_name}").id
        self.graph.add_step(step)
        return dict(step.outputs)

    # -- workflows ----------------------------------------------------------------------

    def _workflow(
        self,
        workflow: Any,
        path: str,
        inputs: dict[str, _Source],
        requirements: list[Any],
        hints: list[Any],
    ) -> dict[str, _Source]:
        """Flatten ``workflow`` under ``path``; return its outputs by name.

        Args:
            workflow: the cwl_utils Workflow.
            path: the step path of the workflow (``""`` for the root).
            inputs: the values of the workflow's inputs (already defaulted for the root).
            requirements: the workflow's effective requirements.
            hints: the workflow's effective hints.
        """
        doc = _document(workflow)
        key = str(getattr(workflow, "id", "") or id(workflow))
        if key in self._stack and not key.startswith("_:"):
            raise WorkflowDefinitionError(f"{doc}: workflow {key} runs itself recursively")
        self._stack.append(key)
        try:
            env: dict[str, _Source] = {}
            for param in workflow.inputs:
                input_name = shortname(param.id)
                env[input_name] = self._workflow_input(param, inputs.get(input_name), path)
            steps = {shortname(s.id): s for s in workflow.steps}
            prefix = self._id_prefix(workflow)
            for step in self._ordered_steps(workflow, steps, env, prefix):
                self._step(workflow, step, path, env, steps, prefix, requirements, hints)
            outputs: dict[str, _Source] = {}
            for param in workflow.outputs:
                output_name = shortname(param.id)
                where = f"{doc}: output '{output_name}' field 'outputSource'"
                refs = _as_list(param.outputSource)
                if not refs:
                    raise WorkflowDefinitionError(f"{where}: a workflow output needs an outputSource")
                resolved = [self._resolve(ref, env, steps, prefix, where) for ref in refs]
                outputs[output_name] = self._combine(
                    resolved,
                    f"{path}/{output_name}",
                    link_merge=param.linkMerge,
                    pick_value=param.pickValue,
                    has_default=False,
                    default=None,
                )
            return outputs
        finally:
            self._stack.pop()

    def _workflow_input(self, param: Any, given: _Source | None, path: str) -> _Source:
        """Return the source of a (sub)workflow input, applying its default to nulls."""
        if path == "":
            assert given is not None  # the root's inputs are the input steps' ports
            return given
        default = bus_safe(plain(param.default)) if param.default is not None else None
        if given is None:
            return _Const(default)
        if isinstance(given, _Const):
            return _Const(default if given.value is None else given.value)
        if default is None:
            return given
        return self._combine(
            [given],
            f"{path}/{shortname(param.id)}",
            link_merge=None,
            pick_value=None,
            has_default=True,
            default=default,
        )

    @staticmethod
    def _id_prefix(workflow: Any) -> str | None:
        """Return the identifier fragment that prefixes the workflow's own parameters."""
        for entry in [*workflow.steps, *workflow.inputs]:
            fragment = _fragment(str(entry.id))
            return fragment.rsplit("/", 1)[0] if "/" in fragment else ""
        return None

    def _resolve(
        self, ref: str, env: dict[str, _Source], steps: dict[str, Any], prefix: str | None, where: str
    ) -> _Source:
        """Resolve a ``source``/``outputSource`` reference to the current value source."""
        key = self._source_key(ref, steps, prefix, env)
        if key is None or key not in env:
            known = sorted(env)
            raise WorkflowDefinitionError(
                f"{where}: unknown source '{ref}'; expected a workflow input or a step output"
                f" ({', '.join(known) if known else 'none available'})"
            )
        return env[key]

    @staticmethod
    def _source_key(ref: str, steps: dict[str, Any], prefix: str | None, env: dict[str, Any]) -> str | None:
        """Return ``input`` or ``step/output`` for a reference, or None if it names nothing.

        Accepts full identifiers (``file.cwl#main/step/out``), fragments (``#step/out``) and
        short references (``step/out``, ``inp``).
        """
        fragment = _fragment(str(ref)).lstrip("#")
        if prefix and fragment.startswith(prefix + "/"):
            fragment = fragment[len(prefix) + 1 :]
        if fragment in env:
            return fragment
        parts = fragment.split("/")
        if len(parts) >= 2 and parts[-2] in steps:
            return f"{parts[-2]}/{parts[-1]}"
        if parts[-1] in env and "/" not in parts[-1]:
            return parts[-1]
        return None

    def _ordered_steps(
        self, workflow: Any, steps: dict[str, Any], env: dict[str, _Source], prefix: str | None
    ) -> list[Any]:
        """Order steps so each follows the steps it reads from; ties keep document order."""
        doc = _document(workflow)
        depends: dict[str, set[str]] = {}
        for step_name, step in steps.items():
            needed: set[str] = set()
            for step_input in step.in_:
                for ref in _as_list(step_input.source):
                    key = self._source_key(ref, steps, prefix, env)
                    if key is None:
                        raise WorkflowDefinitionError(
                            f"{doc}: step '{step_name}' input '{shortname(step_input.id)}' field 'source': "
                            f"unknown source '{ref}'; expected a workflow input "
                            f"({', '.join(sorted(env)) or 'none'}) or an output of another step"
                        )
                    if "/" in key:
                        needed.add(key.split("/", 1)[0])
            depends[step_name] = needed
        ordered: list[Any] = []
        done: set[str] = set()
        while len(ordered) < len(steps):
            ready = [n for n in steps if n not in done and depends[n] <= done]
            if not ready:
                stuck = ", ".join(n for n in steps if n not in done)
                raise WorkflowDefinitionError(f"{doc}: steps {stuck} depend on each other in a cycle")
            done.add(ready[0])
            ordered.append(steps[ready[0]])
        return ordered

    # -- one workflow step --------------------------------------------------------------

    def _step(
        self,
        workflow: Any,
        step: Any,
        parent_path: str,
        env: dict[str, _Source],
        steps: dict[str, Any],
        prefix: str | None,
        wf_requirements: list[Any],
        wf_hints: list[Any],
    ) -> None:
        """Translate one workflow step and record its outputs in ``env``."""
        doc = _document(workflow)
        step_name = shortname(step.id)
        path = f"{parent_path}/{step_name}"
        where = f"{doc}: step '{step_name}'"
        run = self._load_run(step, workflow)
        self._check_class(run, f"{where} field 'run'")
        step_requirements, step_hints = resolve_requirements(step, wf_requirements, wf_hints)
        run_requirements, run_hints = resolve_requirements(run, step_requirements, step_hints)
        declared = {shortname(p.id): p for p in run.inputs}
        run_outputs = {shortname(o.id) for o in run.outputs}
        wanted = [shortname(o if isinstance(o, str) else o.id) for o in step.out]
        for output_name in wanted:
            if output_name not in run_outputs:
                raise WorkflowDefinitionError(
                    f"{where} field 'out': '{output_name}' is not an output of the process it runs"
                    f" (expected one of {', '.join(sorted(run_outputs)) or 'none'})"
                )

        # 1. sources, link merge, pickValue, default
        values: dict[str, _Source] = {}
        value_from: dict[str, Any] = {}
        load_contents: list[str] = []
        load_listing: dict[str, str] = {}
        for step_input in step.in_:
            input_name = shortname(step_input.id)
            input_where = f"{where} input '{input_name}' field 'source'"
            refs = _as_list(step_input.source)
            resolved = [self._resolve(ref, env, steps, prefix, input_where) for ref in refs]
            has_default = step_input.default is not None
            default = bus_safe(plain(step_input.default)) if has_default else None
            if not resolved:
                values[input_name] = _Const(default)
            else:
                values[input_name] = self._combine(
                    resolved,
                    f"{path}/{input_name}",
                    link_merge=step_input.linkMerge,
                    pick_value=step_input.pickValue,
                    has_default=has_default,
                    default=default,
                )
            if step_input.valueFrom is not None:
                value_from[input_name] = step_input.valueFrom
            if step_input.loadContents:
                load_contents.append(input_name)
            if step_input.loadListing and shortname(str(step_input.loadListing)) != "no_listing":
                load_listing[input_name] = shortname(str(step_input.loadListing))
        for input_name, param in declared.items():
            if input_name not in values and param.default is None and not _is_optional(param.type_):
                raise WorkflowDefinitionError(
                    f"{where} field 'in': required input '{input_name}' of the process it runs is not "
                    "connected (expected a step input with a source, a default or a valueFrom)"
                )

        # 2. scatter
        scatter = [shortname(s) for s in _as_list(step.scatter)]
        size_ports: list[str] = []
        if scatter:
            for input_name in scatter:
                if input_name not in values:
                    raise WorkflowDefinitionError(
                        f"{where} field 'scatter': '{input_name}' is not an input of this step"
                        f" (expected one of {', '.join(sorted(values)) or 'none'})"
                    )
            method = _SCATTER_METHODS.get(shortname(str(step.scatterMethod or "dotproduct")))
            if method is None:
                raise WorkflowDefinitionError(
                    f"{where} field 'scatterMethod': unknown method {step.scatterMethod!r}"
                    f" (expected one of {', '.join(_SCATTER_METHODS)})"
                )
            if len(scatter) == 1:
                method = "dotproduct"
            levels = len(scatter) if method == "nested_crossproduct" else 1
            scatter_step = ScatterStep(
                id=self.graph.next_step_id(), name=f"{path}/__scatter__", scatter=scatter, method=method
            )
            size_ports = [self.graph.new_port(f"{path}/__scatter__/size{k}").id for k in range(levels)]
            scatter_step.size_ports = size_ports
            values = self._pass_through(scatter_step, values, f"{path}/__scatter__")

        # 3. loadContents/loadListing, then valueFrom
        if value_from or load_contents or load_listing:
            vf_step = ValueFromStep(
                id=self.graph.next_step_id(),
                name=f"{path}/__value_from__",
                expressions={k: plain(v) for k, v in value_from.items()},
                requirements=step_requirements,
                cwl_version=self.cwl_version,
                load_contents=load_contents,
                load_listing=load_listing,
            )
            values = self._pass_through(vf_step, values, f"{path}/__value_from__")

        # 4. when
        conditional: ConditionalStep | None = None
        if step.when is not None:
            conditional = ConditionalStep(
                id=self.graph.next_step_id(),
                name=f"{path}/__when__",
                when=str(step.when),
                requirements=step_requirements,
                cwl_version=self.cwl_version,
            )
            values = self._pass_through(conditional, values, f"{path}/__when__")

        # 5. the run
        run_inputs = {k: v for k, v in values.items() if k in declared}
        job_prefix = f"{path}/__job__" if scatter else path
        if isinstance(run, cwl.Workflow):
            outer_version = self.cwl_version
            self.cwl_version = self._versions.get(id(run), outer_version)
            try:
                inner = self._workflow(run, path, run_inputs, run_requirements, run_hints)
            finally:
                self.cwl_version = outer_version
            results: dict[str, _Source] = {}
            for output_name in wanted:
                source = inner[output_name]
                if conditional is not None:
                    # a fresh port, so that the skipped nulls do not reach the inner
                    # consumers of the same port
                    source = self._combine(
                        [source],
                        f"{job_prefix}/{output_name}",
                        link_merge=None,
                        pick_value=None,
                        has_default=False,
                        default=None,
                        force=True,
                    )
                results[output_name] = source
        else:
            results = dict(
                self._execute(run, path, job_prefix, values, wanted, run_requirements, run_hints)
            )
        if conditional is not None:
            conditional.skip_outputs = {k: str(v) for k, v in results.items()}

        # 6. gathers, innermost level first
        for output_name in wanted:
            source = results[output_name]
            for level in range(len(size_ports) - 1, -1, -1):
                suffix = f"/__gather__{level}" if level else ""
                port = self.graph.new_port(f"{path}/{output_name}{suffix}")
                self.graph.add_step(
                    GatherStep(
                        id=self.graph.next_step_id(),
                        name=f"{path}/__gather__/{output_name}" + (f"/{level}" if level else ""),
                        inputs={"value": str(source), "size": size_ports[level]},
                        outputs={"value": port.id},
                    )
                )
                source = port.id
            env[f"{step_name}/{output_name}"] = source

    def _pass_through(
        self, step: ScatterStep | ValueFromStep | ConditionalStep, values: dict[str, _Source], prefix: str
    ) -> dict[str, _Source]:
        """Wire every step input into ``step``; return the step's output port per input."""
        outputs: dict[str, _Source] = {}
        for input_name, source in values.items():
            if isinstance(source, _Const):
                step.constants[input_name] = source.value
            else:
                step.inputs[input_name] = source
        for input_name in values:
            port = self.graph.new_port(f"{prefix}/{input_name}")
            step.outputs[input_name] = port.id
            outputs[input_name] = port.id
        self.graph.add_step(step)
        return outputs

    def _combine(
        self,
        sources: list[_Source],
        port_name: str,
        *,
        link_merge: str | None,
        pick_value: str | None,
        has_default: bool,
        default: Any,
        force: bool = False,
    ) -> _Source:
        """Return the source of the value built from ``sources``, adding a TransformStep if needed.

        Args:
            sources: the resolved sources, in document order.
            port_name: name of the port the TransformStep would write.
            link_merge: the explicit ``linkMerge``, if any.
            pick_value: the ``pickValue``, if any.
            has_default: whether a ``default`` applies to a null result.
            default: that default.
            force: add a TransformStep even for a single plain source.
        """
        merge = _LINK_MERGE.get(shortname(link_merge)) if link_merge is not None else None
        pick = _PICK_VALUE.get(shortname(pick_value)) if pick_value is not None else None
        if link_merge is not None and merge is None:
            raise WorkflowDefinitionError(
                f"{port_name}: unknown linkMerge {link_merge!r} (expected one of {', '.join(_LINK_MERGE)})"
            )
        if pick_value is not None and pick is None:
            raise WorkflowDefinitionError(
                f"{port_name}: unknown pickValue {pick_value!r} (expected one of {', '.join(_PICK_VALUE)})"
            )
        if len(sources) > 1 and merge is None:
            merge = "merge_nested"
        elif len(sources) == 1 and merge is None and pick is not None:
            # pickValue on a single source: a list value is picked from as it is (a scattered
            # conditional step's output), any other value as a one-element list. Flattening
            # one source does exactly that.
            merge = "merge_flattened"
        plain_single = len(sources) == 1 and merge is None and pick is None
        if plain_single and not has_default and not force:
            return sources[0]
        if plain_single and not force and isinstance(sources[0], _Const):
            value = sources[0].value
            return _Const(default if value is None else value)
        step = TransformStep(
            id=self.graph.next_step_id(),
            name=port_name,
            link_merge=merge,
            pick_value=pick,
            has_default=has_default,
            default=default,
        )
        for index, source in enumerate(sources):
            if isinstance(source, _Const):
                step.constants[str(index)] = source.value
            else:
                step.inputs[str(index)] = source
        step.outputs["value"] = self.graph.new_port(port_name).id
        self.graph.add_step(step)
        return step.outputs["value"]

    def _materialise(self, source: _Source, port_name: str) -> str:
        """Return a port carrying ``source`` (a TransformStep emits a constant at tag ``0``)."""
        if isinstance(source, str):
            return source
        result = self._combine(
            [source],
            port_name,
            link_merge=None,
            pick_value=None,
            has_default=False,
            default=None,
            force=True,
        )
        assert isinstance(result, str)
        return result
