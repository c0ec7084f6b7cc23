"""Connectors: implementations of :class:`streamflow.core.deployment.Connector`."""

from __future__ import annotations

from streamflow.connectors.base import ConnectorWrapper
from streamflow.connectors.local import LOCALHOST, LocalConnector

__all__ = ["LOCALHOST", "ConnectorWrapper", "LocalConnector"]
