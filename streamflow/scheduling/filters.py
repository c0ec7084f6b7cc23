"""Built-in binding filters: how the targets of a step are ordered for each of its jobs.

A binding lists its targets in order of preference; ``bindingFilters`` in ``streamflow.yml``
name filters that reorder (or narrow) them per job before the Scheduler tries them in turn.
"""

from __future__ import annotations

import random
from typing import Any

from streamflow.core.deployment import BindingFilter, Target
from streamflow.core.workflow import Job

__all__ = ["ShuffleBindingFilter"]


class ShuffleBindingFilter(BindingFilter):
    """``shuffle``: the targets in a random order for each job (spreads jobs over equal sites).

    Args:
        name: the filter's name in ``bindingFilters``.
        seed: a seed, for a reproducible order (default: a fresh random one).
    """

    def __init__(self, name: str, seed: int | None = None) -> None:
        super().__init__(name)
        self._random = random.Random(seed)

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``shuffle`` filter's ``config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {"seed": {"type": "integer", "description": "Seed of the random order (reproducible runs)"}},
            "additionalProperties": False,
        }

    async def get_targets(self, job: Job, targets: list[Target]) -> list[Target]:
        """``targets`` in a random order."""
        shuffled = list(targets)
        self._random.shuffle(shuffled)
        return shuffled
