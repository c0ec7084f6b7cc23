"""The ``streamflow.yml`` configuration: loading, validation, bindings.

Example::

    from streamflow.config import load_config

    config = load_config("streamflow.yml")          # raises ConfigError with file:line: key: message
    workflow = config.workflows["demo"]
    binding = workflow.get_binding("/main/step")    # closest bound ancestor, else __LOCAL__
    deployment = binding.targets[0].deployment      # a DeploymentConfig
"""

from __future__ import annotations

from streamflow.config._loader import build_context, get_schema, load_config, validate_config
from streamflow.config._model import (
    PluginConfig,
    PortBinding,
    StepBinding,
    StreamFlowConfig,
    WorkflowConfig,
    find_binding,
)

__all__ = [
    "PluginConfig",
    "PortBinding",
    "StepBinding",
    "StreamFlowConfig",
    "WorkflowConfig",
    "build_context",
    "find_binding",
    "get_schema",
    "load_config",
    "validate_config",
]
