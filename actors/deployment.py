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

import os
import socket
from typing import Any, ClassVar

import structlog

from actors._runtime import Actor, RunContext
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
        "recorded": dict[str, int],
        "failed": set[str],
    }

    def __init__(self, ctx: RunContext, deployments: DefaultDeploymentManager) -> None:
        super().__init__(ctx, "deployments")
        self.deployments = deployments
        self.generation = int(ctx.settings.get("generation", 0))
        self.needed: set[str] = {name for name, config in deployments.configs.items()
                                 if name != LOCAL_DEPLOYMENT and not config.lazy}
        self.recorded: dict[str, int] = {}  # deployment -> generation of its last DeploymentDeployed
        self.failed: set[str] = set()
        self.up_here: list[str] = []  # deployed by this process, in order

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("step", "deploy")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobRequested):
            if body.target and body.target != LOCAL_DEPLOYMENT:
                self.needed.add(body.target)
        elif isinstance(body, DeploymentDeployed):
            self.recorded[body.deployment] = max(self.recorded.get(body.deployment, -1), body.generation)
        elif isinstance(body, DeploymentFailed) and body.generation == self.generation:
            self.failed.add(body.deployment)

    async def react(self) -> None:
        for name in sorted(self.needed - self.failed):
            if name in self.up_here:
                continue
            config = self.deployments.configs.get(name)
            if config is None:
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
            if self.recorded.get(name, -1) >= self.generation:
                continue  # recorded by this generation before a crash of this process
            locations = [self._info(config, loc) for loc in available.values()]
            await self.append("deploy", name, DeploymentDeployed(
                deployment=name, connector=config.type, external=config.external, locations=locations,
                host=f"{socket.gethostname()}/{os.getpid()}", generation=self.generation),
                key=f"deployed/{self.generation}")
            self.recorded[name] = self.generation
            log.info("deployment_deployed", deployment=name, connector=config.type, locations=len(locations))

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

    async def undeploy_all(self) -> None:
        """Tear down (or disconnect from) what this process deployed, recording each."""
        for name in reversed(self.up_here):
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
