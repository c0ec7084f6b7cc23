"""The DataManager actor: where data lives, and making job inputs available.

It follows ``JobScheduled`` (make the job's input files and directories available on the
chosen location, then append ``InputsStaged``) and ``JobCompleted`` (register the output
paths as PRIMARY data locations of that location: ``DataLocationsRegistered``). Its registry
of data locations is a fold of its own events. It is the only writer of
``sf.ev.<run>.data.<job>``.

On a deployment that shares this machine's filesystem (``__LOCAL__``) nothing has to be
copied: inputs are only checked to exist, so a vanished file is reported before the job is
queued rather than by a confusing tool error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

import structlog

from actors._runtime import Actor, RunContext
from events.log import Record
from events.schema import (
    DataLocationsRegistered,
    InputsLost,
    InputsStaged,
    JobCompleted,
    JobRequested,
    JobScheduled,
    RegisteredFile,
)
from streamflow.data.objectstore import is_published

__all__ = ["DataManagerActor", "iter_paths"]

log = structlog.get_logger("streamflow.data")


def _path_of(obj: dict[str, Any]) -> str | None:
    path = obj.get("path")
    if isinstance(path, str):
        return path
    location = obj.get("location")
    if isinstance(location, str) and location.startswith("file://"):
        return unquote(urlparse(location).path)
    return None


def iter_paths(value: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(path, object)`` for every File/Directory (and secondary file) in a CWL value."""
    if isinstance(value, dict):
        cls = value.get("class")
        if cls in ("File", "Directory"):
            path = _path_of(value)
            if path is not None:
                yield path, value
            for sec in value.get("secondaryFiles") or []:
                yield from iter_paths(sec)
            if cls == "Directory":
                for item in value.get("listing") or []:
                    yield from iter_paths(item)
            return
        for item in value.values():
            yield from iter_paths(item)
    elif isinstance(value, list):
        for item in value:
            yield from iter_paths(item)


class DataManagerActor(Actor):
    """Owns ``sf.ev.<run>.data.*``.

    Args:
        ctx: the run context.
        shared: deployments whose locations share this process's filesystem.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "requests": dict[str, dict[str, Any]],
        "to_stage": dict[str, JobScheduled],
        "staged": set[str],
        "to_register": dict[str, JobCompleted],
        "registered": set[str],
        "locations": dict[str, tuple[str, str]],
        "registry": dict[str, set[tuple[str, str]]],
        "lost": dict[str, int],
        "waiting": set[str],
    }

    def __init__(self, ctx: RunContext, shared: set[str] | None = None) -> None:
        super().__init__(ctx, "data-manager")
        self.shared = shared or {"__LOCAL__"}
        self.requests: dict[str, dict[str, Any]] = {}
        self.to_stage: dict[str, JobScheduled] = {}
        self.staged: set[str] = set()
        self.to_register: dict[str, JobCompleted] = {}
        self.registered: set[str] = set()
        self.locations: dict[str, tuple[str, str]] = {}
        self.registry: dict[str, set[tuple[str, str]]] = {}
        self.lost: dict[str, int] = {}  # job -> how many losses were recorded
        self.waiting: set[str] = set()  # jobs whose inputs are lost, waiting for a rollback

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("data", "alloc", "job", "step")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobRequested):
            self.requests[body.job] = body.inputs
        elif isinstance(body, JobScheduled):
            self.locations[body.job] = (body.deployment, body.location)
            if body.job not in self.staged:
                self.to_stage[body.job] = body
        elif isinstance(body, InputsStaged):
            self.staged.add(body.job)
            self.to_stage.pop(body.job, None)
            self.waiting.discard(body.job)
        elif isinstance(body, InputsLost):
            self.lost[body.job] = max(self.lost.get(body.job, 0), body.attempt)
            self.waiting.add(body.job)
        elif isinstance(body, JobCompleted):
            if body.job not in self.registered:
                self.to_register[body.job] = body
            # A producer ran again (rollback): jobs waiting for lost data may go on.
            for job in self.waiting:
                if job in self.locations:
                    self.to_stage[job] = JobScheduled(job=job, deployment=self.locations[job][0],
                                                      location=self.locations[job][1])
        elif isinstance(body, DataLocationsRegistered):
            self.registered.add(body.job)
            self.to_register.pop(body.job, None)
            for item in body.files:
                self.registry.setdefault(item.path, set()).add((body.deployment, body.location))

    async def react(self) -> None:
        for job, scheduled in list(self.to_stage.items()):
            inputs = self.requests.get(job, {})
            missing = [p for p, obj in iter_paths(inputs)
                       if scheduled.deployment in self.shared and obj.get("class") == "File" and not os.path.exists(p)]
            if missing:
                # Produced on a machine that shares no filesystem with this one, and published.
                missing = [p for p in missing if not await is_published(self.ctx.log.js, p)]
            if missing:
                self.to_stage.pop(job, None)
                if job in self.waiting:
                    continue  # already reported; a rollback is on its way
                attempt = self.lost.get(job, 0) + 1
                log.warning("inputs_lost", job=job, paths=missing[:5])
                await self.append("data", job, InputsLost(job=job, paths=missing, attempt=attempt),
                                  key=f"lost/{attempt}")
                self.lost[job] = attempt
                self.waiting.add(job)
                continue
            await self.append("data", job, InputsStaged(job=job, location=scheduled.location, transferred=0),
                              key="staged")
            self.staged.add(job)
            self.to_stage.pop(job, None)
        for job, completed in list(self.to_register.items()):
            deployment, location = self.locations.get(job, ("__LOCAL__", "localhost"))
            files = [RegisteredFile(path=p, kind=str(obj.get("class")), size=int(obj.get("size") or 0),
                                    checksum=obj.get("checksum"))
                     for p, obj in iter_paths(completed.outputs)]
            await self.append("data", job, DataLocationsRegistered(job=job, deployment=deployment,
                                                                    location=location, files=files),
                              key="registered")
            self.registered.add(job)
            self.to_register.pop(job, None)
