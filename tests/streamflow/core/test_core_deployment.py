"""Tests of deployment types and the default deployment manager."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from streamflow.connectors.base import ConnectorWrapper
from streamflow.connectors.local import LocalConnector
from streamflow.core.data import StreamWrapper
from streamflow.core.deployment import (
    LOCAL_DEPLOYMENT,
    Connector,
    DeploymentConfig,
    ExecutionLocation,
    LocalTarget,
    Target,
    WrapsConfig,
)
from streamflow.core.scheduling import AvailableLocation
from streamflow.deployment import DefaultDeploymentManager, wraps_chain
from streamflow.errors import ConfigError, DeploymentError
from streamflow.plugins import Registry, StreamFlowPlugin

EVENTS: list[str] = []


class _RecordingWrapper(ConnectorWrapper):
    """A wrapper connector that records deploy/undeploy and delegates everything else."""

    def __init__(self, deployment_name: str, config_dir: str, connector: Connector, service: str | None = None, fail_undeploy: bool = False) -> None:  # fmt: skip
        super().__init__(deployment_name, config_dir, connector, service)
        self.fail_undeploy = fail_undeploy

    async def deploy(self, external: bool) -> None:
        EVENTS.append(f"deploy:{self.deployment_name}:{external}")

    async def undeploy(self, external: bool) -> None:
        EVENTS.append(f"undeploy:{self.deployment_name}")
        if self.fail_undeploy:
            raise RuntimeError("cannot undeploy")

    async def get_available_locations(self, service: str | None = None) -> dict[str, AvailableLocation]:
        return await self.connector.get_available_locations(service)

    async def run(self, location: ExecutionLocation, command: list[str], environment: Mapping[str, str] | None = None, workdir: str | None = None, stdin: int | str | None = None, stdout: int | str | None = None, stderr: int | str | None = None, capture_output: bool = False, timeout: float | None = None, job_name: str | None = None) -> tuple[str, int] | int | None:  # fmt: skip
        return await self.connector.run(location, command, environment, workdir, stdin, stdout, stderr, capture_output, timeout, job_name)  # fmt: skip

    async def copy_local_to_remote(self, src: str, dst: str, locations: Sequence[ExecutionLocation], read_only: bool = False) -> None:  # fmt: skip
        await self.connector.copy_local_to_remote(src, dst, locations, read_only)

    async def copy_remote_to_local(self, src: str, dst: str, location: ExecutionLocation, read_only: bool = False) -> None:  # fmt: skip
        await self.connector.copy_remote_to_local(src, dst, location, read_only)

    async def copy_remote_to_remote(self, src: str, dst: str, locations: Sequence[ExecutionLocation], source_location: ExecutionLocation, source_connector: Connector | None = None, read_only: bool = False) -> None:  # fmt: skip
        await self.connector.copy_remote_to_remote(
            src, dst, locations, source_location, source_connector, read_only
        )

    def get_stream_reader(self, command: list[str], location: ExecutionLocation) -> AbstractAsyncContextManager[StreamWrapper]:  # fmt: skip
        return self.connector.get_stream_reader(command, location)

    def get_stream_writer(self, command: list[str], location: ExecutionLocation) -> AbstractAsyncContextManager[StreamWrapper]:  # fmt: skip
        return self.connector.get_stream_writer(command, location)


class _TestPlugin(StreamFlowPlugin):
    """Registers the local connector and the recording wrapper."""

    def register(self) -> None:
        self.register_connector("local", LocalConnector)
        self.register_connector("wrapper", _RecordingWrapper)


class _Context:
    """The attributes of a StreamFlowContext the manager uses."""

    def __init__(self, config_dir: str) -> None:
        self.config: dict[str, Any] = {"config_dir": config_dir}


@pytest.fixture
def manager(tmp_path: Any) -> DefaultDeploymentManager:
    """A deployment manager over a registry with the local and recording connectors."""
    EVENTS.clear()
    registry = Registry()
    registry.register_plugin(_TestPlugin)
    return DefaultDeploymentManager(_Context(str(tmp_path)), registry=registry)  # type: ignore[arg-type]


def _wrapper(name: str, wraps: str | None, **config: Any) -> DeploymentConfig:
    return DeploymentConfig(
        name=name, type="wrapper", config=config, wraps=WrapsConfig(deployment=wraps) if wraps else None
    )


def test_execution_location_str_and_hash() -> None:
    """ExecutionLocation prints as deployment[/service]/name and is hashable."""
    assert str(ExecutionLocation("n", "d")) == "d/n"
    assert str(ExecutionLocation("n", "d", service="s")) == "d/s/n"
    assert len({ExecutionLocation("n", "d"), ExecutionLocation("n", "d")}) == 1


def test_local_target_and_workdir_defaults(tmp_path: Any) -> None:
    """LocalTarget is a Target on __LOCAL__; workdir falls back to the deployment, then to a temp dir."""
    target = LocalTarget()
    assert isinstance(target, Target) and target.deployment.name == LOCAL_DEPLOYMENT
    assert target.deployment.external and not target.deployment.lazy
    assert target.effective_workdir.endswith(os.sep + "streamflow")
    deployment = DeploymentConfig(name="x", type="ssh", workdir=str(tmp_path))
    assert Target(deployment=deployment).effective_workdir == str(tmp_path)
    assert Target(deployment=deployment, workdir="/w").effective_workdir == "/w"


def test_wraps_chain_rejects_cycles_and_unknown() -> None:
    """wraps_chain lists a stack innermost last, and rejects cycles and undeclared names."""
    configs = {
        "a": _wrapper("a", "b"),
        "b": _wrapper("b", "c"),
        "c": DeploymentConfig(name="c", type="local"),
    }
    assert wraps_chain("a", configs) == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="circular wraps chain: x -> y -> x"):
        wraps_chain("x", {"x": _wrapper("x", "y"), "y": _wrapper("y", "x")})
    with pytest.raises(ConfigError, match="not declared"):
        wraps_chain("x", {"x": _wrapper("x", "ghost")})


async def test_deploy_stack_inner_first_and_undeploy_reverse(manager: DefaultDeploymentManager) -> None:
    """Deploying a wrapper deploys what it wraps first; undeploy_all goes in reverse order."""
    manager.register(DeploymentConfig(name="host", type="local"))
    manager.register(_wrapper("mid", "host"))
    await manager.deploy(_wrapper("top", "mid"))
    assert manager.deployed == ["host", "mid", "top"]
    top = await manager.get_connector("top")
    assert isinstance(top, _RecordingWrapper) and isinstance(top.connector, _RecordingWrapper)
    assert isinstance(top.connector.connector, LocalConnector)
    await manager.undeploy_all()
    assert EVENTS == ["deploy:mid:False", "deploy:top:False", "undeploy:top", "undeploy:mid"]
    assert manager.deployed == []


async def test_wrapped_connector_runs_real_commands(manager: DefaultDeploymentManager) -> None:
    """A wrapper built by the manager runs commands through the wrapped local connector."""
    manager.register(DeploymentConfig(name="host", type="local"))
    await manager.deploy(_wrapper("top", "host"))
    connector = await manager.get_connector("top")
    assert connector is not None
    result = await connector.run(
        ExecutionLocation("localhost", "host", local=True), ["echo", "hi"], capture_output=True
    )
    assert result == ("hi", 0)
    await manager.close()


async def test_get_connector_is_lazy_and_unknown_is_none(manager: DefaultDeploymentManager) -> None:
    """A registered deployment is deployed on first get_connector; unknown names give None."""
    manager.register(_wrapper("w", LOCAL_DEPLOYMENT))
    assert manager.deployed == []
    assert await manager.get_connector("nope") is None
    connector = await manager.get_connector("w")
    assert connector is await manager.get_connector("w")
    assert manager.deployed == [LOCAL_DEPLOYMENT, "w"]


async def test_undeploy_undeploys_wrappers_first(manager: DefaultDeploymentManager) -> None:
    """Undeploying a wrapped deployment first undeploys what wraps it."""
    manager.register(_wrapper("inner", LOCAL_DEPLOYMENT))
    await manager.deploy(_wrapper("outer", "inner"))
    await manager.undeploy("inner")
    assert EVENTS[-2:] == ["undeploy:outer", "undeploy:inner"]
    assert manager.deployed == [LOCAL_DEPLOYMENT]
    await manager.undeploy("inner")  # unknown / already undeployed: ignored


async def test_deploy_rejects_cycles(manager: DefaultDeploymentManager) -> None:
    """Deploying a circular wraps chain raises ConfigError and deploys nothing."""
    manager.register(_wrapper("a", "b"))
    with pytest.raises(ConfigError, match="circular"):
        await manager.deploy(_wrapper("b", "a"))
    assert manager.deployed == []


async def test_undeploy_all_continues_after_failure(manager: DefaultDeploymentManager) -> None:
    """A failing undeploy does not stop the others; a DeploymentError reports it afterwards."""
    await manager.deploy(_wrapper("bad", LOCAL_DEPLOYMENT, fail_undeploy=True))
    await manager.deploy(_wrapper("good", LOCAL_DEPLOYMENT))
    with pytest.raises(DeploymentError, match="1 deployment"):
        await manager.undeploy_all()
    assert manager.deployed == []
    assert EVENTS[-2:] == ["undeploy:good", "undeploy:bad"]


async def test_bad_connector_config_is_config_error(manager: DefaultDeploymentManager) -> None:
    """Unknown connector keyword arguments are reported as a ConfigError."""
    with pytest.raises(ConfigError, match="invalid config"):
        await manager.deploy(DeploymentConfig(name="x", type="local", config={"bogus": 1}))


async def test_closed_manager_refuses_deploys(manager: DefaultDeploymentManager) -> None:
    """After close(), deploying raises DeploymentError; close() is idempotent."""
    await manager.close()
    await manager.close()
    with pytest.raises(DeploymentError, match="closed"):
        await manager.deploy(DeploymentConfig(name="x", type="local"))
