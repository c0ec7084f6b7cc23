"""Workflow model: the dataflow graph and its step kinds."""

from __future__ import annotations

from streamflow.workflow.graph import (
    ConditionalStep,
    ExecuteStep,
    GatherStep,
    InputStep,
    PortDef,
    ScatterStep,
    StepDef,
    TransformStep,
    ValueFromStep,
    WorkflowGraph,
)

__all__ = [
    "ConditionalStep",
    "ExecuteStep",
    "GatherStep",
    "InputStep",
    "PortDef",
    "ScatterStep",
    "StepDef",
    "TransformStep",
    "ValueFromStep",
    "WorkflowGraph",
]
