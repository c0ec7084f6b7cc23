"""Runtime actions on recorded runs, shared by every front end (the CLI and the web UI).

* :mod:`streamflow.runs.control`: cancel a run; start ``resume``/``rerun`` processes.
* :mod:`streamflow.runs.events`: the filters of ``streamflow events`` and the JSON form of
  an event.

The command line only parses and prints around these functions, so ``streamflow cancel``
and the UI's Cancel button append exactly the same events.
"""

from __future__ import annotations

__all__: list[str] = []
