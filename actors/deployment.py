"""The deployment actor: brings a run's deployments up when they are needed, and records it.

It owns ``sf.ev.<run>.deploy.<deployment>``. Deployments declared ``lazy: false`` are
deployed as soon as the run is hosted; the others when the first job bound to them is
requested (``JobRequested.target``). For each, it asks the process's
:class:`~streamflow.core.deployment.DeploymentManager` for the connector (which deploys it,
and what it ``wraps`` first), reads the locations the connector offers, and appends
``DeploymentDeployed`` with them: the Scheduler places jobs among those locations, and the
DataManager sends their inputs there. A deployment that cannot be brought up is recorded as
``DeploymentFailed``, which fails the run (its jobs could never be placed).

Connectors are process resources (connections, sessions): a resumed run deploys again
(one ``DeploymentDeployed`` per generation; ``external`` deployments are only connected
to), and :meth:`DeploymentActor.undeploy_all` tears down what this process brought up
when the run ends, recording ``DeploymentUndeployed``. The implicit ``__LOCAL__``
deployment is always there and never recorded.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import socket
from typing import Any, ClassVar

import msgspec
import structlog

from actors._runtime import Actor, RunContext
from events.agents import AgentInfo
from events.log import Record
from events.schema import (
    DeploymentDeployed,
    DeploymentFailed,
    DeploymentUndeployed,
    JobRequested,
    LocationInfo,
)
from streamflow.core.deployment import LOCAL_DEPLOYMENT, DeploymentConfig, default_workdir
from streamflow.deployment.manager import DefaultDeploymentManager

__all__ = ["DeploymentActor"]

log = structlog.get_logger("streamflow.deployment")


class DeploymentActor(Actor):
    """Owns ``sf.ev.<run>.deploy.*``.

    Args:
        ctx: the run context.
        deployments: this process's deployment manager (with the run's deployments registered).
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "needed": set[str],
        "failed": set[str],
    }

    def __init__(self, ctx: RunContext, deployments: DefaultDeploymentManager,
                 local: LocationInfo | None = None) -> None:
        super().__init__(ctx, "deployments")
        self.deployments = deployments
        self.local = local
        self.generation = int(ctx.settings.get("generation", 0))
        self.needed: set[str] = {name for name, config in deployments.configs.items()
                                 if name != LOCAL_DEPLOYMENT and not config.lazy}
        self.failed: set[str] = set()
        self.up_here: list[str] = []  # deployed by this process, in order
        self.offered: dict[str, list[LocationInfo]] = {}  # what its connector offers, once deployed here
        self.agents: dict[str, list[AgentInfo]] = {}  # live agents by deployment (from sf_agents)
        self._signatures: dict[str, str] = {}  # deployment -> what was last recorded by this process

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("step", "deploy")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobRequested):
            if body.target and body.target != LOCAL_DEPLOYMENT:
                self.needed.add(body.target)
            self.needed.update(t for t in body.targets if t != LOCAL_DEPLOYMENT)
        elif isinstance(body, DeploymentDeployed):
            if body.generation == self.generation:
                self._signatures.setdefault(body.deployment, _signature(body.locations))
        elif isinstance(body, DeploymentFailed) and body.generation == self.generation:
            self.failed.add(body.deployment)

    def agents_changed(self, agents: list[AgentInfo]) -> None:
        """The live agents (from the announcements bucket); :meth:`react` records the change."""
        grouped: dict[str, list[AgentInfo]] = {}
        for agent in agents:
            grouped.setdefault(agent.deployment, []).append(agent)
        if grouped != self.agents:
            self.agents = grouped
            self.wake()

    async def react(self) -> None:
        for name in sorted(self.needed - self.failed):
            if name in self.up_here:
                continue
            config = self.deployments.configs.get(name)
            if config is None:
                if name in self.agents:
                    continue  # served by agents only: nothing to deploy from here
                await self._failed(name, f"no deployment named {name!r} is declared in this run's streamflow.yml")
                continue
            try:
                connector = await self.deployments.get_connector(name)
                assert connector is not None
                available = await connector.get_available_locations()
            except Exception as exc:  # a connector's failure, whatever it is, fails the deployment
                log.error("deployment_failed", deployment=name, error=str(exc))
                await self._failed(name, str(exc) or type(exc).__name__)
                continue
            self.up_here.append(name)
            self.offered[name] = [self._info(config, loc) for loc in available.values()]
            log.info("deployment_deployed", deployment=name, connector=config.type, locations=len(available))
        for name in sorted({*self.offered, *self.agents}):
            if name != LOCAL_DEPLOYMENT and name not in self.offered and name not in self.needed:
                continue  # agents of a deployment this run does not use
            await self._record(name)

    async def _record(self, name: str) -> None:
        """Append ``DeploymentDeployed`` for ``name`` if what it offers changed (or was never recorded)."""
        locations = list(self.offered.get(name, []))
        if name == LOCAL_DEPLOYMENT and self.local is not None and name in self.agents:
            locations.append(self.local)  # this process's own workers serve it too
        locations += [LocationInfo(name=agent.name, hostname=agent.hostname, local=agent.shared_fs,
                                   cores=agent.cores if agent.workers <= 0 else float(agent.workers),
                                   memory=agent.memory, slots=max(1, agent.workers))
                      for agent in self.agents.get(name, [])]
        if not locations:
            return
        signature = _signature(locations)
        if self._signatures.get(name) == signature:
            return
        config = self.deployments.configs.get(name)
        await self.append("deploy", name, DeploymentDeployed(
            deployment=name, connector=config.type if config is not None else "agent",
            external=config.external if config is not None else True, locations=locations,
            host=f"{socket.gethostname()}/{os.getpid()}", generation=self.generation),
            key=f"deployed/{self.generation}/{signature}")
        self._signatures[name] = signature

    async def _clean(self, name: str) -> None:
        config = self.deployments.configs.get(name)
        remote = {loc.name for loc in self.offered.get(name, []) if not loc.local}
        if config is None or not remote:
            return
        directory = posixpath.join(default_workdir(config), self.ctx.run_id)
        try:
            connector = await self.deployments.get_connector(name)
            assert connector is not None
            for available in (await connector.get_available_locations()).values():
                if available.name in remote:
                    await connector.run(available.location, ["rm", "-rf", "--", directory], capture_output=True)
        except Exception as exc:  # leaving scratch data behind is not worth failing the run for
            log.warning("deployment_clean_failed", deployment=name, directory=directory, error=str(exc))

    @staticmethod
    def _info(config: DeploymentConfig, location: Any) -> LocationInfo:
        hardware = location.hardware
        return LocationInfo(
            name=location.name, hostname=location.hostname, service=location.service, local=location.local,
            cores=float(hardware.cores) if hardware is not None else 0.0,
            memory=float(hardware.memory) if hardware is not None else 0.0,
            storage=dict(hardware.storage) if hardware is not None else {},
            slots=int(location.slots or 0), workdir=default_workdir(config))

    async def _failed(self, name: str, error: str) -> None:
        self.failed.add(name)
        await self.append("deploy", name, DeploymentFailed(deployment=name, error=error, generation=self.generation),
                          key=f"failed/{self.generation}")

    async def undeploy_all(self, clean: bool = False) -> None:
        """Tear down (or disconnect from) what this process deployed, recording each.

        Args:
            clean: first remove the run's directory (``<workdir>/<run>``: its jobs and the data
                sent there) from every location that does not share this filesystem.
        """
        for name in reversed(self.up_here):
            if clean:
                await self._clean(name)
            error = ""
            try:
                await self.deployments.undeploy(name)
            except Exception as exc:  # keep tearing down the others
                error = str(exc) or type(exc).__name__
                log.error("deployment_undeploy_failed", deployment=name, error=error)
            try:
                await self.append("deploy", name, DeploymentUndeployed(deployment=name, generation=self.generation,
                                                                       error=error),
                                  key=f"undeployed/{self.generation}")
            except Exception as exc:  # the bus may be gone at the very end; the teardown happened
                log.warning("deployment_undeploy_unrecorded", deployment=name, error=str(exc))
        self.up_here.clear()
        await self.deployments.undeploy_all()


def _signature(locations: list[LocationInfo]) -> str:
    """A short digest of what a deployment offers (a new one is recorded when it changes)."""
    return hashlib.sha1(msgspec.json.encode(sorted(locations, key=lambda loc: loc.name)),
                        usedforsecurity=False).hexdigest()[:12]
