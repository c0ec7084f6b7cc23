"""The command line: the composition root that wires the bus, the log, the actors and the workers.

Importing this package installs :class:`_LeanStructlog`, which keeps ``structlog`` from
importing ``rich`` and ``greenlet``: structlog imports them, when installed, for pretty
tracebacks and greenlet-local context, neither of which the command line uses (exceptions
are rendered by ``format_exc_info`` before any renderer sees them, and the engine uses
contextvars). It was a quarter of the import time of every ``streamflow`` command
(~70 ms). Anything else, ``streamflow.cli.progress`` included, still imports ``rich``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: the runner client imports this package, and nothing else of it
if TYPE_CHECKING:  # importlib.abc alone costs ~30 ms
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__: list[str] = []

_SKIPPED_FOR_STRUCTLOG = frozenset({"rich", "greenlet"})


class _LeanStructlog:
    """Refuse ``rich`` and ``greenlet`` to structlog's own modules (they fall back).

    A meta path finder (``importlib.abc.MetaPathFinder``'s protocol, not its class).
    """

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if fullname not in _SKIPPED_FOR_STRUCTLOG:
            return None
        frame = sys._getframe(1)
        # Up to the first frame outside the import machinery: the importing module.
        while frame is not None and frame.f_code.co_filename.startswith("<frozen importlib"):
            frame = frame.f_back  # type: ignore[assignment]
        importer = frame.f_globals.get("__name__", "") if frame is not None else ""
        if importer == "structlog" or importer.startswith("structlog."):
            raise ModuleNotFoundError(f"{fullname} is not used through structlog here", name=fullname)
        return None


if not any(isinstance(finder, _LeanStructlog) for finder in sys.meta_path):
    sys.meta_path.insert(0, _LeanStructlog())
