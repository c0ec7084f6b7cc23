"""The default :class:`~streamflow.core.data.DataManager`: a registry of copies, and transfers
through the connectors.

The DataManager actor (``actors/data_manager.py``) owns one instance per run and folds its
events into it: ``DataLocationsRegistered`` and ``DataTransferred`` become registered copies
(through the synchronous ``record_*`` methods, since a fold does no I/O); when a job is
scheduled the actor asks it for the copies of each input on the job's location and calls
:meth:`DefaultDataManager.transfer_data` for the missing ones, then appends the facts.

Identity of data: every path is known by its path *on this machine* (the engine's), where
inputs are read and where the outputs of every job are mirrored; that path is the
``relpath`` of each :class:`~streamflow.core.data.DataLocation`, and ``path`` is where the
copy sits on its own location. A directory registered on a location covers everything
under it.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streamflow.core.data import DataLocation, DataManager, DataType
from streamflow.core.deployment import LOCAL_DEPLOYMENT, Connector, ExecutionLocation
from streamflow.errors import TransferError

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.core.deployment import DeploymentManager

__all__ = ["LOCAL_LOCATION", "DefaultDataManager"]

LOCAL_LOCATION = ExecutionLocation(name="localhost", deployment=LOCAL_DEPLOYMENT, hostname="localhost", local=True)
"""This machine, where every path has its identity."""

_Key = tuple[str, str]  # (deployment, location)


class DefaultDataManager(DataManager):
    """Copies of every path by location, and transfers through the deployments' connectors.

    Args:
        context: the StreamFlow context.
        deployments: where connectors come from (None: transfers are refused, the registry
            still works, e.g. in a process that only reads a run).
    """

    def __init__(self, context: StreamFlowContext | None = None,
                 deployments: DeploymentManager | None = None) -> None:
        self.context = context  # type: ignore[assignment]
        self.deployments = deployments
        self._copies: dict[str, dict[_Key, DataLocation]] = {}
        self._relations: dict[str, set[str]] = {}

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of ``dataManager.config`` (no options)."""
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                "additionalProperties": False}

    # --- the fold (synchronous, no I/O) ---------------------------------------------------------

    def record(self, location: ExecutionLocation, path: str, relpath: str, *, size: int = 0,
               data_type: DataType = DataType.PRIMARY) -> DataLocation:
        """Record that the data known here as ``relpath`` sits at ``path`` on ``location``."""
        copy = DataLocation(name=location.name, deployment=location.deployment, path=path, relpath=relpath,
                            data_type=data_type, available=True, service=location.service, size=size)
        self._copies.setdefault(relpath, {})[(location.deployment, location.name)] = copy
        return copy

    def copy_on(self, relpath: str, deployment: str, location: str) -> str | None:
        """Where the data known here as ``relpath`` is on a location, if it is there.

        A copy of a directory holding ``relpath`` counts: the answer is inside it.
        """
        current, rest = relpath, ""
        while True:
            copy = self._copies.get(current, {}).get((deployment, location))
            if copy is not None and copy.available:
                return posixpath.join(copy.path, rest) if rest else copy.path
            parent = posixpath.dirname(current)
            if parent == current:
                return None
            rest = posixpath.join(posixpath.basename(current), rest) if rest else posixpath.basename(current)
            current = parent

    # --- the DataManager interface --------------------------------------------------------------

    async def register_path(self, location: ExecutionLocation, path: str, relpath: str | None = None,
                            data_type: DataType = DataType.PRIMARY) -> DataLocation:
        """Record a copy (``relpath``: the data's path on this machine; defaults to ``path``)."""
        return self.record(location, path, relpath or path, data_type=data_type)

    async def register_relation(self, src_location: DataLocation, dst_location: DataLocation) -> None:
        """Record that two copies hold the same data: the second becomes a copy of the first's data."""
        self._copies.setdefault(src_location.relpath, {})[(dst_location.deployment, dst_location.name)] = (
            DataLocation(name=dst_location.name, deployment=dst_location.deployment, path=dst_location.path,
                         relpath=src_location.relpath, data_type=dst_location.data_type, available=True,
                         service=dst_location.service, size=src_location.size))

    async def get_data_locations(self, path: str, deployment: str | None = None, location_name: str | None = None,
                                 data_type: DataType | None = None) -> list[DataLocation]:
        """The valid copies of the data known here as ``path``, optionally filtered."""
        return [copy for (dep, loc), copy in self._copies.get(path, {}).items()
                if copy.available and (deployment is None or dep == deployment)
                and (location_name is None or loc == location_name)
                and (data_type is None or copy.data_type == data_type)]

    async def get_source_location(self, path: str, dst_deployment: str) -> DataLocation | None:
        """The best copy to send to ``dst_deployment``: one already there, then this machine's, then any."""
        copies = await self.get_data_locations(path)
        for preferred in (dst_deployment, LOCAL_DEPLOYMENT):
            for copy in copies:
                if copy.deployment == preferred:
                    return copy
        if not copies and os.path.exists(path):
            return self.record(LOCAL_LOCATION, path, path)
        return copies[0] if copies else None

    async def invalidate_location(self, location: ExecutionLocation, path: str) -> None:
        """Forget the copies of ``path`` and everything under it on ``location``."""
        key = (location.deployment, location.name)
        prefix = path.rstrip("/") + "/"
        for copies in self._copies.values():
            copy = copies.get(key)
            if copy is not None and (copy.path == path or copy.path.startswith(prefix)):
                del copies[key]

    async def transfer_data(self, src_location: ExecutionLocation, src_path: str,
                            dst_locations: Sequence[ExecutionLocation], dst_path: str,
                            writable: bool = False) -> None:
        """Copy through the connectors: this machine to a location, back, or between two locations.

        The copies are registered under the source's identity (its ``relpath`` when the
        source is registered, else ``src_path``).

        Raises:
            TransferError: a copy failed, or a deployment is unknown.
        """
        if not dst_locations:
            return
        read_only = not writable
        src_connector = await self._connector(src_location.deployment)
        relpath = self._relpath_of(src_location, src_path)
        by_deployment: dict[str, list[ExecutionLocation]] = {}
        for location in dst_locations:
            by_deployment.setdefault(location.deployment, []).append(location)
        for deployment, locations in by_deployment.items():
            dst_connector = await self._connector(deployment)
            if src_location.local or src_location.deployment == LOCAL_DEPLOYMENT:
                await dst_connector.copy_local_to_remote(src_path, dst_path, locations, read_only=read_only)
            elif all(loc.local or loc.deployment == LOCAL_DEPLOYMENT for loc in locations):
                await src_connector.copy_remote_to_local(src_path, dst_path, src_location, read_only=read_only)
            else:
                await dst_connector.copy_remote_to_remote(src_path, dst_path, locations, src_location,
                                                          source_connector=src_connector, read_only=read_only)
            for location in locations:
                self.record(location, dst_path, relpath)

    def _relpath_of(self, location: ExecutionLocation, path: str) -> str:
        for relpath, copies in self._copies.items():
            copy = copies.get((location.deployment, location.name))
            if copy is not None and copy.path == path:
                return relpath
        return path

    async def _connector(self, deployment: str) -> Connector:
        if self.deployments is None:
            raise TransferError("no deployment manager: this process cannot move data", retryable=False)
        connector = await self.deployments.get_connector(deployment)
        if connector is None:
            raise TransferError(f"no deployment named {deployment!r}", retryable=False)
        return connector

    async def close(self) -> None:
        """Forget every copy (the registry is rebuilt from the log by whoever needs it)."""
        self._copies.clear()
