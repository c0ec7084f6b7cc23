"""Data management: where each path lives, and how it moves between locations."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import msgspec

from streamflow.core.context import SchemaEntity
from streamflow.core.deployment import ExecutionLocation

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext

__all__ = ["DataLocation", "DataManager", "DataType", "StreamWrapper"]


class DataType(enum.IntEnum):
    """How a registered path relates to the data (values are StreamFlow's)."""

    PRIMARY = 0  # a real copy of the data
    SYMBOLIC_LINK = 1  # a link to a primary copy on the same location
    INVALID = 2  # the copy was lost or removed; never used as a source


class DataLocation(msgspec.Struct, frozen=True, kw_only=True):
    """One copy of a path on one location.

    Attributes:
        name: the location name.
        deployment: the deployment of the location.
        path: the absolute path on the location.
        relpath: the path relative to the job directory it was produced in (for staging).
        data_type: what the copy is.
        available: whether the copy is complete and can be read.
        service: the service of the location, if any.
        size: the size in bytes, when known (0 otherwise); used by data-locality scheduling.
    """

    name: str
    deployment: str
    path: str
    relpath: str
    data_type: DataType = DataType.PRIMARY
    available: bool = False
    service: str | None = None
    size: int = 0

    @property
    def location(self) -> ExecutionLocation:
        """The location of this copy."""
        return ExecutionLocation(name=self.name, deployment=self.deployment, service=self.service)


class DataManager(SchemaEntity):
    """Tracks the copies of every path and moves data between locations.

    Args:
        context: the StreamFlow context.
    """

    def __init__(self, context: StreamFlowContext) -> None:
        self.context = context

    @abstractmethod
    async def register_path(
        self,
        location: ExecutionLocation,
        path: str,
        relpath: str | None = None,
        data_type: DataType = DataType.PRIMARY,
    ) -> DataLocation:
        """Record that ``path`` exists on ``location`` (its parents are registered too).

        Args:
            location: where the path lives.
            path: the absolute path.
            relpath: the path relative to its job directory; defaults to ``path``.
            data_type: what the copy is.

        Returns:
            The registered, available data location.
        """

    @abstractmethod
    async def register_relation(self, src_location: DataLocation, dst_location: DataLocation) -> None:
        """Record that two registered copies hold the same data (aliases)."""

    @abstractmethod
    async def get_data_locations(
        self,
        path: str,
        deployment: str | None = None,
        location_name: str | None = None,
        data_type: DataType | None = None,
    ) -> list[DataLocation]:
        """Return the valid copies of ``path`` (and its aliases), optionally filtered."""

    @abstractmethod
    async def get_source_location(self, path: str, dst_deployment: str) -> DataLocation | None:
        """Return the best copy of ``path`` to transfer to ``dst_deployment``.

        Preference: a primary copy on ``dst_deployment``, then a local one, then any.

        Returns:
            The copy, or ``None`` if the path is not registered anywhere.
        """

    @abstractmethod
    async def invalidate_location(self, location: ExecutionLocation, path: str) -> None:
        """Mark the copy of ``path`` (and everything under it) on ``location`` as INVALID."""

    @abstractmethod
    async def transfer_data(
        self,
        src_location: ExecutionLocation,
        src_path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str,
        writable: bool = False,
    ) -> None:
        """Copy ``src_path`` on ``src_location`` to ``dst_path`` on each of ``dst_locations``.

        The new copies are registered. A copy that is not ``writable`` may be a link, and is
        recorded as an alias of the source.

        Raises:
            streamflow.errors.TransferError: if a copy failed.
        """

    @abstractmethod
    async def close(self) -> None:
        """Release resources. Idempotent."""


class StreamWrapper(ABC):
    """A byte stream to or from a command on a location."""

    @abstractmethod
    async def read(self, size: int | None = None) -> bytes:
        """Read up to ``size`` bytes (all, if ``None``); ``b""`` at the end of the stream."""

    @abstractmethod
    async def write(self, data: bytes) -> None:
        """Write ``data``, waiting while the consumer is behind (bounded buffer)."""

    @abstractmethod
    async def close(self) -> None:
        """Close this end of the stream. Idempotent."""
