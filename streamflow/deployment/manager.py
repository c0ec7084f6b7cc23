"""The default deployment manager: lazy deployments, ``wraps`` stacks, reverse-order teardown."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

import structlog

from streamflow.connectors.base import ConnectorWrapper
from streamflow.core.deployment import LOCAL_DEPLOYMENT, Connector, DeploymentConfig, DeploymentManager
from streamflow.errors import ConfigError, ConnectorError, DeploymentError

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.plugins import Registry

__all__ = ["DefaultDeploymentManager", "wraps_chain"]

_log = structlog.get_logger(__name__)


def wraps_chain(name: str, configs: Mapping[str, DeploymentConfig]) -> list[str]:
    """Return ``name`` followed by the deployments it stacks on, innermost last.

    Raises:
        ConfigError: if a deployment in the chain is not declared, or the chain is circular.
    """
    chain = [name]
    current = configs.get(name)
    while current is not None and current.wraps is not None:
        inner = current.wraps.deployment
        if inner in chain:
            raise ConfigError(f"circular wraps chain: {' -> '.join([*chain, inner])}")
        if inner not in configs:
            raise ConfigError(f"deployment {current.name!r} wraps {inner!r}, which is not declared")
        chain.append(inner)
        current = configs[inner]
    return chain


class DefaultDeploymentManager(DeploymentManager):
    """Creates connectors by deployment ``type`` through the plugin registry.

    Deployments are registered with :meth:`register` (lazily) or :meth:`deploy` (now). A lazy
    one is deployed the first time :meth:`get_connector` asks for it. Deploying a deployment
    first deploys what it ``wraps``; its connector, when it is a
    :class:`~streamflow.connectors.base.ConnectorWrapper`, receives the wrapped connector.
    Undeploying goes in the reverse order, wrappers before what they wrap. The implicit
    ``__LOCAL__`` deployment is always known.

    Args:
        context: the StreamFlow context; ``context.config["config_dir"]`` (if set) is passed to
            connectors as their ``config_dir``. None for a manager owned by a run's host
            (the engine), which passes ``config_dir`` itself.
        registry: where connector classes are looked up; the default registry if ``None``.
        config_dir: the directory relative paths of connector configs are resolved against
            (default: the context's ``config_dir``, else the current directory).
    """

    def __init__(self, context: StreamFlowContext | None = None, registry: Registry | None = None,
                 config_dir: str | None = None) -> None:
        super().__init__(cast("StreamFlowContext", context))
        self._registry = registry
        self.config_dir = config_dir or str((context.config.get("config_dir") if context is not None else None)
                                            or os.getcwd())
        self.configs: dict[str, DeploymentConfig] = {
            LOCAL_DEPLOYMENT: DeploymentConfig(name=LOCAL_DEPLOYMENT, type="local", external=True, lazy=False)
        }
        self._connectors: dict[str, Connector] = {}
        self._order: list[str] = []
        self._lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of ``deploymentManager.config`` (no options)."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "additionalProperties": False,
        }

    @property
    def registry(self) -> Registry:
        """The plugin registry connector classes come from."""
        if self._registry is None:
            from streamflow.plugins import Registry

            self._registry = Registry.default()
        return self._registry

    @property
    def deployed(self) -> list[str]:
        """Names of the deployed deployments, in deployment order."""
        return list(self._order)

    def register(self, deployment_config: DeploymentConfig) -> None:
        """Make ``deployment_config`` known without deploying it (replacing an undeployed one).

        Raises:
            DeploymentError: if a deployment with that name is deployed with another config.
        """
        name = deployment_config.name
        if name in self._connectors and self.configs.get(name) != deployment_config:
            raise DeploymentError(
                f"deployment {name!r} is already deployed with another configuration", retryable=False
            )
        self.configs[name] = deployment_config

    async def deploy(self, deployment_config: DeploymentConfig) -> None:
        """Register ``deployment_config`` and deploy it with its ``wraps`` chain (innermost first)."""
        self.register(deployment_config)
        async with self._lock:
            await self._deploy_chain(deployment_config.name)

    async def _deploy_chain(self, name: str) -> Connector:
        if self._closed:
            raise DeploymentError("the deployment manager is closed", retryable=False)
        for deployment in reversed(wraps_chain(name, self.configs)):
            if deployment not in self._connectors:
                await self._deploy_one(self.configs[deployment])
        return self._connectors[name]

    def _create_connector(self, config: DeploymentConfig) -> Connector:
        cls = self.registry.get("connector", config.type)
        kwargs: dict[str, Any] = dict(config.config)
        if config.wraps is not None:
            if issubclass(cls, ConnectorWrapper):
                kwargs["connector"] = self._connectors[config.wraps.deployment]
                kwargs["service"] = config.wraps.service
            else:
                _log.warning("wraps_ignored", deployment=config.name, connector=config.type)
        try:
            return cls(config.name, self.config_dir, **kwargs)
        except TypeError as exc:
            raise ConfigError(
                f"deployment {config.name!r}: invalid config for connector {config.type!r}: {exc}"
            ) from exc

    async def _deploy_one(self, config: DeploymentConfig) -> None:
        connector = self._create_connector(config)
        try:
            await connector.deploy(config.external)
        except ConnectorError:
            raise
        except Exception as exc:  # third-party boundary: translate into our error
            raise DeploymentError(f"cannot deploy {config.name!r}: {exc}") from exc
        self._connectors[config.name] = connector
        self._order.append(config.name)
        _log.info("deployment_deployed", deployment=config.name, type=config.type, external=config.external)

    async def get_connector(self, deployment_name: str) -> Connector | None:
        """Return the connector of ``deployment_name``, deploying it first if needed."""
        if (connector := self._connectors.get(deployment_name)) is not None:
            return connector
        if deployment_name not in self.configs:
            return None
        async with self._lock:
            return await self._deploy_chain(deployment_name)

    async def undeploy(self, deployment_name: str) -> None:
        """Undeploy ``deployment_name``, after the deployed deployments that wrap it."""
        async with self._lock:
            await self._undeploy(deployment_name)

    async def _undeploy(self, name: str) -> None:
        if name not in self._connectors:
            return
        for other in reversed(self._order):
            config = self.configs[other]
            if other != name and config.wraps is not None and config.wraps.deployment == name:
                await self._undeploy(other)
        connector = self._connectors.pop(name)
        self._order.remove(name)
        config = self.configs[name]
        try:
            await connector.undeploy(config.external)
        except ConnectorError:
            raise
        except Exception as exc:  # third-party boundary: translate into our error
            raise DeploymentError(f"cannot undeploy {name!r}: {exc}") from exc
        _log.info("deployment_undeployed", deployment=name)

    async def undeploy_all(self) -> None:
        """Undeploy everything in reverse deployment order, trying all even if some fail.

        Raises:
            DeploymentError: if any undeploy failed (chained to the first failure).
        """
        errors: list[Exception] = []
        async with self._lock:
            for name in reversed(list(self._order)):
                try:
                    await self._undeploy(name)
                except Exception as exc:  # keep tearing down the others
                    _log.error("deployment_undeploy_failed", deployment=name, error=str(exc))
                    self._connectors.pop(name, None)
                    if name in self._order:
                        self._order.remove(name)
                    errors.append(exc)
        if errors:
            raise DeploymentError(f"{len(errors)} deployment(s) failed to undeploy: {errors[0]}") from errors[
                0
            ]

    async def close(self) -> None:
        """Undeploy everything; later deploys fail. Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self.undeploy_all()
