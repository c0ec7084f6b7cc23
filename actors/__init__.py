"""The actors of a run: steps, ports, scheduler, data manager, failure manager, workers.

Actors share no memory: each folds the events it follows from the log and writes only its
own subjects. No actor module imports another actor module except through
:mod:`actors._runtime` and :mod:`actors.port`'s put protocol.
"""

from __future__ import annotations

from actors._runtime import Actor, ActorHost, RunContext

__all__ = ["Actor", "ActorHost", "RunContext"]
