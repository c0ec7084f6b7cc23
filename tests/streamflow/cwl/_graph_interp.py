"""A reference interpreter of :mod:`streamflow.workflow.graph`, for tests only.

It executes a :class:`WorkflowGraph` synchronously and in memory, following the per-tag
semantics documented in ``graph.py``, so that the translator can be validated against the
CWL conformance suite before the actor engine exists. ExecuteSteps run their process with
``cwltool --no-container`` as a subprocess (independent jobs of one sweep run in parallel);
``valueFrom`` and ``when`` are evaluated with cwl_utils' expression evaluator.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from cwl_utils.expression import do_eval
from cwl_utils.parser import save

from streamflow.cwl.files import load_step_input
from streamflow.cwl.utils import plain, requirement_class
from streamflow.workflow.graph import (
    ConditionalStep,
    ExecuteStep,
    GatherStep,
    InputStep,
    ScatterStep,
    StepDef,
    TransformStep,
    ValueFromStep,
    WorkflowGraph,
)

__all__ = ["GraphInterpreter", "InterpreterError"]


class InterpreterError(Exception):
    """A step failed while interpreting the graph (a job, an expression, a pickValue)."""


def _requirements(entries: list[Any]) -> list[Any]:
    """Return requirements as plain dicts with short ``class`` names."""
    result = []
    for entry in entries:
        view = dict(plain(entry))
        view["class"] = requirement_class(entry)
        result.append(view)
    return result


def _evaluate(expr: Any, inputs: dict[str, Any], self_: Any, requirements: list[Any]) -> Any:
    try:
        return do_eval(expr, inputs, _requirements(requirements), None, None, {}, context=self_)
    except Exception as exc:
        raise InterpreterError(f"expression {expr!r} failed: {exc}") from exc


def _link_merge(values: list[Any], method: str | None) -> Any:
    if method is None:
        return values[0]
    if method == "merge_nested":
        return list(values)
    merged: list[Any] = []
    for value in values:
        if isinstance(value, list):
            merged.extend(value)
        else:
            merged.append(value)
    return merged


def _pick_value(value: Any, method: str | None) -> Any:
    if method is None:
        return value
    if not isinstance(value, list):
        raise InterpreterError(f"pickValue {method} needs a list, got {value!r}")
    non_null = [v for v in value if v is not None]
    if method == "all_non_null":
        return non_null
    if method == "first_non_null":
        if not non_null:
            raise InterpreterError("first_non_null: all values are null")
        return non_null[0]
    if len(non_null) != 1:
        raise InterpreterError(f"the_only_non_null: {len(non_null)} non-null values")
    return non_null[0]


class GraphInterpreter:
    """Runs a graph to completion.

    Args:
        graph: the translated graph.
        workdir: a scratch directory for job files and outputs.
    """

    def __init__(self, graph: WorkflowGraph, workdir: str) -> None:
        self.graph = graph
        self.workdir = workdir
        self.tokens: dict[str, dict[str, Any]] = defaultdict(dict)
        self.fired: dict[str, set[str]] = defaultdict(set)
        self.jobs = itertools.count()
        self.executed: list[tuple[str, str]] = []

    def run(self) -> dict[str, Any]:
        """Fire steps until nothing is ready; return the workflow outputs (tag ``"0"``)."""
        while True:
            ready = [(step, tag, obj) for step in self.graph.steps.values() for tag, obj in self._ready(step)]
            if not ready:
                break
            for step, tag, _obj in ready:
                self.fired[step.id].add(tag)
            jobs = [(s, t, o) for s, t, o in ready if isinstance(s, ExecuteStep)]
            for step, tag, obj in ready:
                if not isinstance(step, ExecuteStep):
                    self._fire(step, tag, obj)
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(lambda job: self._execute(*job), jobs))
            for (step, tag, _obj), outputs in zip(jobs, results, strict=True):
                for name, port in step.outputs.items():
                    self._emit(port, tag, outputs.get(name))
        missing = [name for name, port in self.graph.outputs.items() if "0" not in self.tokens[port]]
        if missing:
            raise InterpreterError(f"outputs never produced: {missing}")
        return {name: self.tokens[port]["0"] for name, port in self.graph.outputs.items()}

    # -- readiness ----------------------------------------------------------------------

    def _ready(self, step: StepDef) -> list[tuple[str, dict[str, Any]]]:
        fired = self.fired[step.id]
        if isinstance(step, GatherStep):
            return self._ready_gather(step, fired)
        if not step.inputs:
            return [] if "0" in fired else [("0", dict(step.constants))]
        tag_sets = [set(self.tokens[port]) for port in step.inputs.values()]
        tags = set.intersection(*tag_sets) - fired
        result = []
        for tag in sorted(tags):
            obj = dict(step.constants)
            obj.update({name: self.tokens[port][tag] for name, port in step.inputs.items()})
            result.append((tag, obj))
        return result

    def _ready_gather(self, step: GatherStep, fired: set[str]) -> list[tuple[str, dict[str, Any]]]:
        result = []
        values = self.tokens[step.inputs["value"]]
        for tag, size in self.tokens[step.inputs["size"]].items():
            if tag in fired:
                continue
            depth = tag.count(".") + 1 + step.depth
            items = {t: v for t, v in values.items() if t.startswith(tag + ".") and t.count(".") + 1 == depth}
            if len(items) == size:
                ordered = [items[t] for t in sorted(items, key=lambda t: int(t.rsplit(".", 1)[1]))]
                result.append((tag, {"value": ordered}))
        return result

    # -- firing -------------------------------------------------------------------------

    def _emit(self, port: str, tag: str, value: Any) -> None:
        if tag in self.tokens[port]:
            raise InterpreterError(f"port {port} got two tokens with tag {tag}")
        self.tokens[port][tag] = value

    def _fire(self, step: StepDef, tag: str, obj: dict[str, Any]) -> None:
        if isinstance(step, InputStep):
            self._emit(step.outputs["value"], tag, step.value)
        elif isinstance(step, TransformStep):
            values = [obj.get(str(i)) for i in range(len(obj))]
            value = _pick_value(_link_merge(values, step.link_merge), step.pick_value)
            if value is None and step.has_default:
                value = step.default
            self._emit(step.outputs["value"], tag, value)
        elif isinstance(step, GatherStep):
            self._emit(step.outputs["value"], tag, obj["value"])
        elif isinstance(step, ValueFromStep):
            obj = dict(obj)
            for name in set(step.load_contents) | set(step.load_listing):
                obj[name] = load_step_input(obj.get(name), contents=name in step.load_contents,
                                            listing=step.load_listing.get(name))
            result = dict(obj)
            for name, expr in step.expressions.items():
                result[name] = _evaluate(expr, obj, obj.get(name), step.requirements)
            self._forward(step, tag, result)
        elif isinstance(step, ConditionalStep):
            decision = _evaluate(step.when, obj, None, step.requirements)
            if not isinstance(decision, bool):
                raise InterpreterError(f"when gave {decision!r}, not a boolean")
            if decision:
                self._forward(step, tag, obj)
            else:
                for port in step.skip_outputs.values():
                    self._emit(port, tag, None)
        elif isinstance(step, ScatterStep):
            self._scatter(step, tag, obj)
        else:
            raise InterpreterError(f"unknown step kind {step.kind}")

    def _forward(self, step: StepDef, tag: str, obj: dict[str, Any]) -> None:
        for name, port in step.outputs.items():
            self._emit(port, tag, obj.get(name))

    def _scatter(self, step: ScatterStep, tag: str, obj: dict[str, Any]) -> None:
        lists: list[list[Any]] = []
        for name in step.scatter:
            value = obj.get(name)
            if not isinstance(value, list):
                raise InterpreterError(f"scatter input {name} is not a list: {value!r}")
            lists.append(value)
        combos: list[tuple[str, tuple[Any, ...]]] = []
        if step.method == "dotproduct":
            if len({len(v) for v in lists}) > 1:
                raise InterpreterError("dotproduct over lists of different lengths")
            combos = [(str(i), items) for i, items in enumerate(zip(*lists, strict=True))]
            self._emit(step.size_ports[0], tag, len(combos))
        elif step.method == "flat_crossproduct":
            combos = [(str(i), items) for i, items in enumerate(itertools.product(*lists))]
            self._emit(step.size_ports[0], tag, len(combos))
        else:
            for level, current in enumerate(lists):
                for prefix in itertools.product(*[range(len(v)) for v in lists[:level]]):
                    self._emit(step.size_ports[level], ".".join([tag, *map(str, prefix)]), len(current))
            for index in itertools.product(*[range(len(v)) for v in lists]):
                items = tuple(lst[i] for lst, i in zip(lists, index, strict=True))
                combos.append((".".join(map(str, index)), items))
        for suffix, items in combos:
            element = dict(obj)
            element.update(zip(step.scatter, items, strict=True))
            self._forward(step, f"{tag}.{suffix}", element)

    def _execute(self, step: ExecuteStep, tag: str, obj: dict[str, Any]) -> dict[str, Any]:
        number = next(self.jobs)
        base = os.path.join(self.workdir, f"job{number}")
        os.makedirs(base)
        document = save(step.process, top=True, relative_uris=False)
        document["cwlVersion"] = "v1.2"
        document["requirements"] = _requirements(step.requirements)
        document["hints"] = _requirements(step.hints)
        tool_path = os.path.join(base, "tool.cwl")
        job_path = os.path.join(base, "job.json")
        with open(tool_path, "w", encoding="utf-8") as handle:
            json.dump(document, handle)
        with open(job_path, "w", encoding="utf-8") as handle:
            json.dump({k: v for k, v in obj.items() if v is not None}, handle)
        completed = subprocess.run(
            [
                "cwltool",
                "--no-container",
                "--quiet",
                "--outdir",
                os.path.join(base, "out"),
                tool_path,
                job_path,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        self.executed.append((step.name, tag))
        if completed.returncode != 0:
            raise InterpreterError(f"job {step.name} tag {tag} failed:\n{completed.stderr[-2000:]}")
        return dict(json.loads(completed.stdout))
