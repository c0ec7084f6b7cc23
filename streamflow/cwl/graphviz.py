"""Render a :class:`~streamflow.workflow.graph.WorkflowGraph` as Graphviz DOT, for debugging."""

from __future__ import annotations

import json

from streamflow.workflow.graph import ConditionalStep, ScatterStep, WorkflowGraph

__all__ = ["to_dot"]

_SHAPES = {
    "input": "invhouse",
    "execute": "box",
    "transform": "trapezium",
    "value_from": "parallelogram",
    "scatter": "triangle",
    "conditional": "diamond",
    "gather": "invtriangle",
}


def _quote(text: str) -> str:
    return json.dumps(text)


def to_dot(graph: WorkflowGraph) -> str:
    """Return the DOT source of ``graph``: steps are nodes, ports are labelled edges.

    A port with several producers or consumers gives one edge per pair; size ports are
    dashed and ``when``-skip edges dotted.

    Args:
        graph: the graph to render.

    Returns:
        The DOT text (``dot -Tsvg`` renders it).
    """
    lines = [f"digraph {_quote(graph.name)} {{", "  rankdir=TB;", "  node [fontsize=10];"]
    for step in graph.steps.values():
        label = f"{step.id} {step.kind}\n{step.name}"
        lines.append(f"  {step.id} [label={_quote(label)}, shape={_SHAPES.get(step.kind, 'box')}];")
    for name, port in graph.outputs.items():
        lines.append(f"  out_{port}_{name} [label={_quote(name)}, shape=house];")
    for step in graph.steps.values():
        written: list[tuple[str, str, str]] = [(n, p, "solid") for n, p in step.outputs.items()]
        if isinstance(step, ScatterStep):
            written += [(f"size{k}", p, "dashed") for k, p in enumerate(step.size_ports)]
        if isinstance(step, ConditionalStep):
            written += [(f"skip {n}", p, "dotted") for n, p in step.skip_outputs.items()]
        for _out_name, port, style in written:
            for consumer in graph.consumers(port):
                target = graph.steps[consumer]
                in_names = ", ".join(n for n, p in target.inputs.items() if p == port)
                label = f"{port} {graph.ports[port].name}\n-> {in_names}"
                lines.append(f"  {step.id} -> {consumer} [label={_quote(label)}, style={style}, fontsize=8];")
            for name, out_port in graph.outputs.items():
                if out_port == port:
                    lines.append(f"  {step.id} -> out_{port}_{name} [label={_quote(port)}, style={style}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
