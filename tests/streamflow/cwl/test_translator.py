"""Tests of the CWL -> workflow graph translator, on the CWL v1.2 conformance documents."""

from __future__ import annotations

import os
import shutil
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from _graph_interp import GraphInterpreter, InterpreterError
from ruamel.yaml import YAML

from streamflow.cwl.loader import load_document, load_job
from streamflow.cwl.translator import translate
from streamflow.cwl.utils import requirement_class
from streamflow.errors import UnsupportedRequirementError, WorkflowDefinitionError
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

SUITE = Path(os.environ.get("CWL_V12_SUITE", "/work/shared/cwl-v1.2"))
TESTS = SUITE / "tests"

pytestmark = pytest.mark.skipif(not TESTS.is_dir(), reason=f"CWL v1.2 conformance suite not found at {SUITE}")


def _translate(relative: str, **kwargs: Any) -> WorkflowGraph:
    doc = load_document(str(TESTS / relative))
    return translate(doc.process, cwl_version=doc.cwl_version, **kwargs)


def _by_name(graph: WorkflowGraph, name: str) -> StepDef:
    matches = [s for s in graph.steps.values() if s.name == name]
    assert len(matches) == 1, f"{name}: {[s.name for s in graph.steps.values()]}"
    return matches[0]


def _kinds(graph: WorkflowGraph) -> Counter[str]:
    return Counter(s.kind for s in graph.steps.values())


def _producer(graph: WorkflowGraph, port: str) -> StepDef:
    producers = graph.producers(port)
    assert len(producers) == 1, producers
    return graph.steps[producers[0]]


def _signature(graph: WorkflowGraph) -> list[tuple[Any, ...]]:
    return (
        [(s.id, s.kind, s.name, s.inputs, s.outputs, sorted(s.constants)) for s in graph.steps.values()]
        + [(p.id, p.name) for p in graph.ports.values()]
        + [graph.inputs, graph.outputs]
    )


# -- structure ------------------------------------------------------------------------------


def test_root_tool_has_one_input_step_per_input_and_one_execute_step() -> None:
    """A root CommandLineTool becomes input steps feeding a single execute step at ``/``."""
    graph = _translate("wc-tool.cwl", job_order={"file1": {"class": "File", "location": "x"}})
    assert _kinds(graph) == Counter({"input": 1, "execute": 1})
    execute = _by_name(graph, "/")
    assert isinstance(execute, ExecuteStep)
    assert execute.inputs == {"file1": graph.inputs["file1"]}
    assert graph.outputs == {"output": execute.outputs["output"]}
    source = _producer(graph, graph.inputs["file1"])
    assert isinstance(source, InputStep)
    assert source.value == {"class": "File", "location": "x"}
    assert graph.name == "wc-tool"


def test_input_step_takes_the_workflow_default_when_the_job_omits_it() -> None:
    """A missing root input gets its declared default as the input step's value."""
    graph = _translate("count-lines5-wf.cwl")
    step = _producer(graph, graph.inputs["file1"])
    assert isinstance(step, InputStep)
    assert step.value["class"] == "File"
    assert step.value["location"].endswith("/hello.txt")


def test_dotproduct_scatter_has_one_size_port_and_one_gather() -> None:
    """A dotproduct scatter over two inputs gives one size port read by one gather per output."""
    graph = _translate("scatter-wf4.cwl#main")
    scatter = _by_name(graph, "/step1/__scatter__")
    assert isinstance(scatter, ScatterStep)
    assert scatter.method == "dotproduct"
    assert scatter.scatter == ["echo_in1", "echo_in2"]
    assert len(scatter.size_ports) == 1
    execute = _by_name(graph, "/step1")
    assert set(execute.inputs.values()) <= set(scatter.outputs.values())
    gather = _producer(graph, graph.outputs["out"])
    assert isinstance(gather, GatherStep)
    assert gather.inputs == {"value": execute.outputs["echo_out"], "size": scatter.size_ports[0]}


def test_nested_crossproduct_gathers_one_level_at_a_time_innermost_first() -> None:
    """nested_crossproduct over two inputs chains two gathers: size port 1 first, then 0."""
    graph = _translate("scatter-wf2.cwl")
    scatter = _by_name(graph, "/step1/__scatter__")
    assert isinstance(scatter, ScatterStep)
    assert scatter.method == "nested_crossproduct"
    assert len(scatter.size_ports) == 2
    outer = _producer(graph, graph.outputs["out"])
    assert isinstance(outer, GatherStep)
    assert outer.inputs["size"] == scatter.size_ports[0]
    inner = _producer(graph, outer.inputs["value"])
    assert isinstance(inner, GatherStep)
    assert inner.inputs["size"] == scatter.size_ports[1]
    assert inner.inputs["value"] == _by_name(graph, "/step1").outputs["echo_out"]


def test_flat_crossproduct_has_a_single_level() -> None:
    """flat_crossproduct gives one size port and one gather, like a dot product."""
    graph = _translate("scatter-wf3.cwl#main")
    scatter = _by_name(graph, "/step1/__scatter__")
    assert isinstance(scatter, ScatterStep)
    assert scatter.method == "flat_crossproduct"
    assert len(scatter.size_ports) == 1
    assert _kinds(graph)["gather"] == 1


def test_nested_scatter_inside_a_scattered_subworkflow_gathers_inner_levels_first() -> None:
    """A scattered subworkflow containing a scatter gathers the inner scatter inside, then the outer."""
    graph = _translate("scatter/nested-crossproduct-nested-crossproduct-scatter.cwl")
    outer = _by_name(graph, "/scatterletters/__scatter__")
    inner = _by_name(graph, "/scatterletters/scatternumbers/__scatter__")
    assert isinstance(outer, ScatterStep) and isinstance(inner, ScatterStep)
    chain = []
    port = graph.outputs["result"]
    while isinstance(step := _producer(graph, port), GatherStep):
        chain.append(step.inputs["size"])
        port = step.inputs["value"]
    assert chain == [outer.size_ports[0], outer.size_ports[1], inner.size_ports[0], inner.size_ports[1]]
    assert step.name == "/scatterletters/scatternumbers"
    # the inner scatter reads what the outer one scattered
    assert set(inner.inputs.values()) <= set(outer.outputs.values())


def test_embedded_subworkflows_are_flattened_with_nested_step_paths() -> None:
    """Sub-sub-workflows are flattened; steps are named by their full path and bound by it."""
    seen: list[str] = []

    def binding(path: str) -> str:
        seen.append(path)
        return "remote" if path.startswith("/step1/") else "__LOCAL__"

    graph = _translate("count-lines15-wf.cwl", bindings=binding)
    executes = {s.name: s for s in graph.steps.values() if isinstance(s, ExecuteStep)}
    assert sorted(executes) == sorted(seen)
    assert all("/" in name[1:] for name in executes)
    assert {s.target for n, s in executes.items() if n.startswith("/step1/")} == {"remote"}
    assert "workflow" not in _kinds(graph)
    # every execute step input is produced by exactly one step
    for step in executes.values():
        for port in step.inputs.values():
            assert len(graph.producers(port)) == 1


def test_multiple_sources_default_to_merge_nested() -> None:
    """A step input with two sources and no linkMerge gets a merge_nested transform."""
    graph = _translate("count-lines4-wf.cwl")
    scatter = _by_name(graph, "/step1/__scatter__")
    transform = _producer(graph, scatter.inputs["file1"])
    assert isinstance(transform, TransformStep)
    assert transform.link_merge == "merge_nested"
    assert transform.inputs == {"0": graph.inputs["file1"], "1": graph.inputs["file2"]}


def test_explicit_merge_nested_with_one_source_still_wraps() -> None:
    """An explicit linkMerge on a single source keeps a transform (the value gets wrapped)."""
    graph = _translate("count-lines19-wf.cwl")
    execute = _by_name(graph, "/step1")
    transform = _producer(graph, execute.inputs["file1"])
    assert isinstance(transform, TransformStep)
    assert transform.link_merge == "merge_nested"
    assert transform.inputs == {"0": graph.inputs["file1"]}


def test_step_defaults_become_constants_or_null_defaults() -> None:
    """A default without source is a constant; with a source it is a transform default."""
    no_source = _translate("count-lines11-wf.cwl")
    execute = _by_name(no_source, "/step1")
    transform = _producer(no_source, execute.inputs["file1"])
    assert isinstance(transform, TransformStep)
    assert transform.has_default and transform.default["location"].endswith("/whale.txt")
    constant = _translate("count-lines9-wf.cwl")
    execute = _by_name(constant, "/step1")
    assert execute.inputs == {}
    assert constant.steps[execute.id].constants["file1"]["class"] == "File"


def test_value_from_sees_undeclared_inputs_and_the_job_waits_for_them() -> None:
    """valueFrom/when get every step input; the execute step waits for every one too.

    An input the tool does not declare still orders the job after its source (e.g. a
    ``wait: step/out`` input after an in-place update); the tool's input object ignores it.
    """
    graph = _translate("conditionals/cond-wf-003.1.cwl")
    when = _by_name(graph, "/step2/__when__")
    assert isinstance(when, ConditionalStep)
    assert set(when.inputs) == {"in1", "a_new_var"}
    execute = _by_name(graph, "/step2")
    assert set(execute.inputs) == {"in1", "a_new_var"}
    assert when.skip_outputs == execute.outputs
    assert graph.producers(execute.outputs["out1"]) == [when.id, execute.id]
    output = _producer(graph, graph.outputs["out1"])
    assert isinstance(output, TransformStep)
    assert (output.link_merge, output.pick_value) == ("merge_nested", "first_non_null")


def test_scatter_then_value_from_then_when_then_run() -> None:
    """A step with scatter, valueFrom and when chains them in that order before the run."""
    graph = _translate("conditionals/cond-with-defaults.cwl")
    names = [s.name for s in graph.steps.values() if s.name.startswith("/step_paired")]
    assert names == [
        "/step_paired/initial_file",
        "/step_paired/__scatter__",
        "/step_paired/__value_from__",
        "/step_paired/__when__",
        "/step_paired",
        "/step_paired/__gather__/processed_file",
    ]
    scatter = _by_name(graph, "/step_paired/__scatter__")
    assert scatter.constants == {"suffix": ["1", "2"], "out_file_name": None}
    value_from = _by_name(graph, "/step_paired/__value_from__")
    assert isinstance(value_from, ValueFromStep)
    assert value_from.expressions == {"out_file_name": "filename_paired$(inputs.suffix)"}
    assert "InlineJavascriptRequirement" in {requirement_class(r) for r in value_from.requirements}
    when = _by_name(graph, "/step_paired/__when__")
    gather = _by_name(graph, "/step_paired/__gather__/processed_file")
    assert isinstance(when, ConditionalStep)
    assert gather.inputs["value"] == when.skip_outputs["processed_file"]


def test_requirements_are_inherited_and_overridden_by_the_process() -> None:
    """The run process's requirements override the step's, which override the workflow's."""
    graph = _translate("count-lines14-wf.cwl")
    for step in graph.steps.values():
        if isinstance(step, ExecuteStep):
            classes = [requirement_class(r) for r in step.requirements]
            assert len(classes) == len(set(classes))
            assert "ScatterFeatureRequirement" in classes
            assert step.cwl_version == "v1.2"


@pytest.mark.parametrize(
    "document",
    [
        "scatter-wf2.cwl",
        "count-lines15-wf.cwl",
        "conditionals/cond-wf-011.cwl",
        "conditionals/cond-with-defaults.cwl",
        "scatter/nested-crossproduct-nested-crossproduct-scatter.cwl",
    ],
)
def test_translation_is_deterministic(document: str) -> None:
    """Translating the same document twice gives the same step and port ids."""
    first = _translate(document)
    second = _translate(document)
    assert _signature(first) == _signature(second)
    assert all(p.id == f"p{i}" for i, p in enumerate(first.ports.values()))


def test_every_valid_conformance_workflow_translates() -> None:
    """All conformance Workflows that should not fail translate, with no dangling port reads."""
    translated = 0
    for entry in _conformance_entries().values():
        if entry.get("should_fail") or "tool" not in entry:
            continue
        try:
            doc = load_document(str(entry["_base"] / entry["tool"]))
        except Exception:  # the loader's own failures are tested elsewhere
            continue
        if type(doc.process).__name__ != "Workflow":
            continue
        graph = translate(doc.process, cwl_version=doc.cwl_version)
        for step in graph.steps.values():
            for port in step.inputs.values():
                assert graph.producers(port), f"{entry['id']}: {step.name} reads unproduced {port}"
        translated += 1
    assert translated > 100


# -- errors ---------------------------------------------------------------------------------

_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: echo
inputs:
  msg: {type: string, inputBinding: {}}
  extra: {type: int, default: 1}
outputs:
  out: stdout
"""


def _write_workflow(tmp_path: Path, body: str) -> WorkflowGraph:
    (tmp_path / "tool.cwl").write_text(_TOOL)
    path = tmp_path / "wf.cwl"
    path.write_text("cwlVersion: v1.2\nclass: Workflow\n" + textwrap.dedent(body))
    doc = load_document(str(path))
    return translate(doc.process, cwl_version=doc.cwl_version)


def test_unknown_source_is_a_definition_error(tmp_path: Path) -> None:
    """A step input reading an unknown source names the file, step, input and field."""
    with pytest.raises(WorkflowDefinitionError, match=r"wf\.cwl.*step 's1' input 'msg' field 'source'.*nope"):
        _write_workflow(
            tmp_path,
            """\
            inputs: {m: string}
            outputs: {o: {type: File, outputSource: s1/out}}
            steps:
              s1: {run: tool.cwl, in: {msg: nope}, out: [out]}
            """,
        )


def test_unknown_output_source_is_a_definition_error(tmp_path: Path) -> None:
    """A workflow output reading an unknown step output is rejected."""
    with pytest.raises(WorkflowDefinitionError, match=r"output 'o' field 'outputSource'.*s1/missing"):
        _write_workflow(
            tmp_path,
            """\
            inputs: {m: string}
            outputs: {o: {type: File, outputSource: s1/missing}}
            steps:
              s1: {run: tool.cwl, in: {msg: m}, out: [out]}
            """,
        )


def test_scatter_over_an_unknown_input_is_a_definition_error(tmp_path: Path) -> None:
    """Scattering over a name that is not a step input is rejected."""
    with pytest.raises(WorkflowDefinitionError, match=r"step 's1' field 'scatter': 'other'"):
        _write_workflow(
            tmp_path,
            """\
            requirements: {ScatterFeatureRequirement: {}}
            inputs: {m: "string[]"}
            outputs: {o: {type: "File[]", outputSource: s1/out}}
            steps:
              s1: {run: tool.cwl, scatter: other, in: {msg: m}, out: [out]}
            """,
        )


def test_unconnected_required_input_is_a_definition_error(tmp_path: Path) -> None:
    """A required tool input with no default that the step does not connect is rejected."""
    with pytest.raises(WorkflowDefinitionError, match=r"step 's1' field 'in': required input 'msg'"):
        _write_workflow(
            tmp_path,
            """\
            inputs: {m: string}
            outputs: {o: {type: File, outputSource: s1/out}}
            steps:
              s1: {run: tool.cwl, in: {extra: {default: 2}}, out: [out]}
            """,
        )


def test_unknown_step_output_is_a_definition_error(tmp_path: Path) -> None:
    """A step ``out`` the run process does not have is rejected."""
    with pytest.raises(WorkflowDefinitionError, match=r"step 's1' field 'out': 'nothing'"):
        _write_workflow(
            tmp_path,
            """\
            inputs: {m: string}
            outputs: {o: {type: File, outputSource: s1/out}}
            steps:
              s1: {run: tool.cwl, in: {msg: m}, out: [out, nothing]}
            """,
        )


def test_dependency_cycle_is_a_definition_error(tmp_path: Path) -> None:
    """Two steps reading each other's outputs are rejected as a cycle."""
    with pytest.raises(WorkflowDefinitionError, match=r"cycle"):
        _write_workflow(
            tmp_path,
            """\
            inputs: {m: string}
            outputs: {o: {type: File, outputSource: a/out}}
            steps:
              a: {run: tool.cwl, in: {msg: b/out}, out: [out]}
              b: {run: tool.cwl, in: {msg: a/out}, out: [out]}
            """,
        )


def test_operation_is_unsupported(tmp_path: Path) -> None:
    """An Operation cannot be translated into something executable."""
    path = tmp_path / "op.cwl"
    path.write_text("cwlVersion: v1.2\nclass: Operation\ninputs: {a: string}\noutputs: {b: string}\n")
    doc = load_document(str(path))
    with pytest.raises(UnsupportedRequirementError, match="Operation"):
        translate(doc.process, cwl_version="v1.2")


# -- semantics through the reference interpreter ---------------------------------------------


def _entries(index: Path) -> list[dict[str, Any]]:
    result = []
    for entry in YAML(typ="safe", pure=True).load(index.read_text()):
        if "$import" in entry:
            result.extend(_entries(index.parent / entry["$import"]))
        else:
            entry["_base"] = index.parent
            result.append(entry)
    return result


_CACHE: dict[str, dict[str, Any]] = {}


def _conformance_entries() -> dict[str, dict[str, Any]]:
    if not _CACHE and (SUITE / "conformance_tests.yaml").is_file():
        _CACHE.update({str(e["id"]): e for e in _entries(SUITE / "conformance_tests.yaml")})
    return _CACHE


def _matches(expected: Any, actual: Any) -> bool:
    """Compare outputs like cwltest: File locations by basename, ``Any`` matches anything."""
    if expected == "Any":
        return True
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        for key, value in expected.items():
            if key in ("location", "path") and expected.get("class") in ("File", "Directory"):
                if not str(actual.get("location", "")).endswith("/" + str(value).rsplit("/", 1)[-1]):
                    return False
            elif key != "listing" and not _matches(value, actual.get(key)):
                return False
        return True
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(_matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _load_contents(process: Any, job: dict[str, Any]) -> None:
    """Apply root ``loadContents`` (the input validator's job in the real engine)."""
    for param in process.inputs:
        name = param.id.split("#")[-1].split("/")[-1]
        binding = getattr(param, "inputBinding", None)
        wanted = param.loadContents or (binding is not None and binding.loadContents)
        value = job.get(name)
        if wanted and isinstance(value, dict) and value.get("class") == "File":
            with open(value["location"].removeprefix("file://"), encoding="utf-8") as handle:
                value["contents"] = handle.read(64 * 1024)


INTERPRETED = [
    "wf_wc_parseInt",
    "wf_wc_scatter",
    "wf_wc_scatter_multiple_merge",
    "wf_wc_scatter_multiple_nested",
    "wf_wc_scatter_multiple_flattened",
    "wf_wc_nomultiple_merge_nested",
    "wf_input_default_missing",
    "wf_scatter_single_param",
    "wf_scatter_two_nested_crossproduct",
    "wf_scatter_two_flat_crossproduct",
    "wf_scatter_two_dotproduct",
    "wf_scatter_emptylist",
    "wf_scatter_nested_crossproduct_secondempty",
    "wf_scatter_nested_crossproduct_firstempty",
    "nested_workflow",
    "step_input_default_value_nullsource",
    "step_input_default_value_overriden",
    "step_input_default_value_overriden_2nd_step_null",
    "valuefrom_wf_step",
    "valuefrom_wf_step_multiple",
    "valuefrom_wf_step_other",
    "workflowstep_valuefrom_string",
    "scatter_embedded_subworkflow",
    "scatter_multi_input_embedded_subworkflow",
    "workflow_embedded_subworkflow_with_subsubworkflow_and_tool",
    "workflow_input_inputBinding_loadContents",
    "workflow_input_loadContents_without_inputBinding",
    "expression_tool_input_loadContents",
    "workflow_step_in_loadContents",
    "direct_optional_null_result",
    "direct_optional_nonnull_result",
    "pass_through_required_false_when",
    "first_non_null_second_non_null",
    "first_non_null_all_null",
    "the_only_non_null_multi_true",
    "all_non_null_all_null",
    "all_non_null_multi_non_null",
    "condifional_scatter_on_nonscattered_false",
    "scatter_on_scattered_conditional",
    "conditionals_nested_cross_scatter",
    "conditionals_non_boolean_fail",
    "conditionals_multi_scatter_nojs",
    "cond-with-defaults-1",
    "cond-with-defaults-2",
]


@pytest.mark.conformance
@pytest.mark.skipif(shutil.which("cwltool") is None, reason="cwltool is not installed")
@pytest.mark.parametrize("test_id", INTERPRETED)
def test_reference_interpreter_reproduces_conformance_outputs(test_id: str, tmp_path: Path) -> None:
    """Running the translated graph with the reference interpreter gives the expected outputs."""
    entry = _conformance_entries()[test_id]
    doc = load_document(str(entry["_base"] / entry["tool"]))
    job = load_job(str(entry["_base"] / entry["job"]) if entry.get("job") else None, doc.process)
    _load_contents(doc.process, job)
    graph = translate(doc.process, cwl_version=doc.cwl_version, job_order=job)
    interpreter = GraphInterpreter(graph, str(tmp_path))
    if entry.get("should_fail"):
        with pytest.raises(InterpreterError):
            interpreter.run()
        return
    outputs = interpreter.run()
    assert _matches(entry["output"], outputs), f"expected {entry['output']}\ngot {outputs}"


def test_to_dot_draws_every_step_and_skip_edge() -> None:
    """The DOT rendering has a node per step and dotted edges for when-skips."""
    from streamflow.cwl.graphviz import to_dot

    graph = _translate("conditionals/cond-wf-003.1.cwl")
    dot = to_dot(graph)
    assert dot.startswith('digraph "cond-wf-003.1" {')
    assert all(f"  {step_id} [label=" in dot for step_id in graph.steps)
    assert "style=dotted" in dot
