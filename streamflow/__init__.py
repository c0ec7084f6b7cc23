"""StreamFlow: an event-sourced CWL workflow manager for hybrid deployments, on NATS JetStream."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
