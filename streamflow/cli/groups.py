"""The actor groups of a run (``--actors``), without the engine's imports.

``streamflow host``'s parser names them, and every ``streamflow`` command line builds that
parser: importing :mod:`streamflow.cli.engine` for them cost every command ~0.25 s.
"""

from __future__ import annotations

from streamflow.errors import WorkflowDefinitionError

__all__ = ["ACTOR_GROUPS", "parse_groups"]

#: The actor groups a process can host (``--actors``); together they make a whole run.
ACTOR_GROUPS = ("steps", "ports", "scheduler", "data-manager", "failure-manager", "supervisor")


def parse_groups(spec: str | None) -> set[str] | None:
    """Parse ``--actors a,b,c``.

    Raises:
        WorkflowDefinitionError: an unknown group name.
    """
    if not spec:
        return None
    groups = {g.strip() for g in spec.split(",") if g.strip()}
    unknown = groups - set(ACTOR_GROUPS)
    if unknown:
        raise WorkflowDefinitionError(f"--actors: unknown actor group(s) {sorted(unknown)}; expected some of "
                                      f"{', '.join(ACTOR_GROUPS)}")
    return groups
