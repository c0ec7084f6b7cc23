"""Pins the public names of streamflow.core, streamflow.plugins and their neighbours."""

from __future__ import annotations

import importlib

import pytest

EXPORTS = {
    "streamflow.core": [
        "LOCAL_DEPLOYMENT", "AvailableLocation", "BindingConfig", "BindingFilter", "CheckpointManager",
        "Command", "CommandOutput", "Connector", "DataLocation", "DataManager", "DataType", "Database",
        "DependencyType", "DeploymentConfig", "DeploymentManager", "ExecutionLocation", "Executor",
        "FailureManager", "FilterConfig", "Hardware", "Job", "JobAllocation", "LocalTarget",
        "LocationAllocation", "PersistentId", "Policy", "Port", "RetryDecision", "RetryPolicy", "Row",
        "Scheduler", "SchemaEntity", "Service", "Status", "Step", "StreamFlowContext", "StreamWrapper",
        "Target", "TerminationToken", "Token", "Workflow", "WrapsConfig", "compare_tags", "get_tag",
        "is_retryable", "parent_tag",
    ],
    "streamflow.plugins": [
        "ENTRY_POINT_GROUP", "KINDS", "BuiltinPlugin", "Kind", "PluginOverrideWarning", "Registry",
        "StreamFlowPlugin",
    ],
    "streamflow.config": [
        "PluginConfig", "PortBinding", "StepBinding", "StreamFlowConfig", "WorkflowConfig", "build_context",
        "find_binding", "get_schema", "load_config", "validate_config",
    ],
    "streamflow.connectors": ["LOCALHOST", "ConnectorWrapper", "LocalConnector"],
    "streamflow.deployment": ["DefaultDeploymentManager", "wraps_chain"],
    "streamflow.recovery": [
        "DefaultCheckpointManager", "DummyCheckpointManager", "DummyFailureManager", "RetryFailureManager",
    ],
    "streamflow.scheduling": ["ACTIVE_STATUSES", "DataLocalityPolicy"],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_all_is_pinned(module_name: str) -> None:
    """The module's __all__ matches the pinned list exactly, and every name resolves."""
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(EXPORTS[module_name])
    for name in module.__all__:
        assert hasattr(module, name), name
