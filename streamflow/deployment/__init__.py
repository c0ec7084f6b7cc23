"""Deployment management: the default :class:`~streamflow.core.deployment.DeploymentManager`."""

from __future__ import annotations

from streamflow.deployment.manager import DefaultDeploymentManager, wraps_chain

__all__ = ["DefaultDeploymentManager", "wraps_chain"]
