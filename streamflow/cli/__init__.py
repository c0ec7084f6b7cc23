"""The command line: the composition root that wires the bus, the log, the actors and the workers."""

from __future__ import annotations

__all__: list[str] = []
