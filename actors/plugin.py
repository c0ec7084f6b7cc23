"""``ActorsPlugin``: registers the implementations the actors run on under StreamFlow's extension points.

Published as the entry point ``actors = "actors.plugin:ActorsPlugin"`` of the group
``streamflow.plugin``, it registers:

========================= ========= ======================================================
extension point           name      class
========================= ========= ======================================================
``scheduler``             default   :class:`~streamflow.scheduling.scheduler.DefaultScheduler`
``data_manager``          default   :class:`~streamflow.data.manager.DefaultDataManager`
``database``              default   :class:`~streamflow.persistence.EventLogDatabase`
========================= ========= ======================================================

The Scheduler actor owns a ``DefaultScheduler`` per run and the DataManager actor a
``DefaultDataManager``: they fold the run's events into them and call their interface
(``schedule``, ``notify_status``; ``transfer_data``, ``get_source_location``...) to take
their decisions, which they record as events. The failure managers (``default``,
``retry``, ``dummy``) are the built-in plugin's and are left alone.
"""

from __future__ import annotations

from streamflow.data.manager import DefaultDataManager
from streamflow.persistence import EventLogDatabase
from streamflow.plugins import StreamFlowPlugin
from streamflow.scheduling.scheduler import DefaultScheduler

__all__ = ["ActorsPlugin"]


class ActorsPlugin(StreamFlowPlugin):
    """Registers scheduler ``default``, data manager ``default`` and database ``default``."""

    def register(self) -> None:
        """Register the implementations the actors run on."""
        self.register_scheduler("default", DefaultScheduler)
        self.register_data_manager("default", DefaultDataManager)
        self.register_database("default", EventLogDatabase)
