"""StreamFlow's core interfaces: abstract base classes and the value types they exchange.

Implementations live next to this package (``streamflow.connectors``, ``streamflow.deployment``,
``streamflow.scheduling``, ``streamflow.recovery``) and are selected by name through the plugin
registry (:mod:`streamflow.plugins`).
"""

from __future__ import annotations

from streamflow.core.context import SchemaEntity, StreamFlowContext
from streamflow.core.data import DataLocation, DataManager, DataType, StreamWrapper
from streamflow.core.deployment import (
    LOCAL_DEPLOYMENT,
    BindingConfig,
    BindingFilter,
    Connector,
    DeploymentConfig,
    DeploymentManager,
    ExecutionLocation,
    FilterConfig,
    LocalTarget,
    Service,
    Target,
    WrapsConfig,
)
from streamflow.core.persistence import Database, DependencyType, PersistentId, Row
from streamflow.core.recovery import (
    CheckpointManager,
    FailureManager,
    RetryDecision,
    RetryPolicy,
    is_retryable,
)
from streamflow.core.scheduling import (
    AvailableLocation,
    Hardware,
    JobAllocation,
    LocationAllocation,
    Policy,
    Scheduler,
)
from streamflow.core.workflow import (
    Command,
    CommandOutput,
    Executor,
    Job,
    Port,
    Status,
    Step,
    TerminationToken,
    Token,
    Workflow,
    compare_tags,
    get_tag,
    parent_tag,
)

__all__ = [
    "LOCAL_DEPLOYMENT",
    "AvailableLocation",
    "BindingConfig",
    "BindingFilter",
    "CheckpointManager",
    "Command",
    "CommandOutput",
    "Connector",
    "DataLocation",
    "DataManager",
    "DataType",
    "Database",
    "DependencyType",
    "DeploymentConfig",
    "DeploymentManager",
    "ExecutionLocation",
    "Executor",
    "FailureManager",
    "FilterConfig",
    "Hardware",
    "Job",
    "JobAllocation",
    "LocalTarget",
    "LocationAllocation",
    "PersistentId",
    "Policy",
    "Port",
    "RetryDecision",
    "RetryPolicy",
    "Row",
    "Scheduler",
    "SchemaEntity",
    "Service",
    "Status",
    "Step",
    "StreamFlowContext",
    "StreamWrapper",
    "Target",
    "TerminationToken",
    "Token",
    "Workflow",
    "WrapsConfig",
    "compare_tags",
    "get_tag",
    "is_retryable",
    "parent_tag",
]
