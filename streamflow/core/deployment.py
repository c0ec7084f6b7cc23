"""Deployments: where jobs run. Connectors, locations, targets and the deployment manager.

Vocabulary (StreamFlow's): a *deployment* is a unit of deployment (an SSH cluster, a Docker
container, this machine), handled by one :class:`Connector`; a *service* is a unit of binding
inside it (a container of a pod, a queue of a batch system); a *location* is a unit of
scheduling (a node, a container replica) where commands run and files live.
"""

from __future__ import annotations

import os
import tempfile
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import msgspec

from streamflow.core.context import SchemaEntity

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.core.data import StreamWrapper
    from streamflow.core.scheduling import AvailableLocation
    from streamflow.core.workflow import Job

__all__ = [
    "LOCAL_DEPLOYMENT",
    "BindingConfig",
    "BindingFilter",
    "Connector",
    "DeploymentConfig",
    "DeploymentManager",
    "ExecutionLocation",
    "FilterConfig",
    "LocalTarget",
    "Service",
    "Target",
    "WrapsConfig",
]

LOCAL_DEPLOYMENT = "__LOCAL__"
"""Name of the implicit deployment of this machine (type ``local``), used by unbound steps."""


class ExecutionLocation(msgspec.Struct, frozen=True):
    """A place where commands run and files live. Hashable; ``str()`` is ``deployment[/service]/name``.

    Attributes:
        name: the location name, unique within its deployment (and service).
        deployment: the deployment name.
        service: the service within the deployment, if any.
        hostname: the host name or address, if meaningful.
        local: whether the location shares this machine's file system.
        wraps: the location this one is stacked on (e.g. the node a container runs on).
    """

    name: str
    deployment: str
    service: str | None = None
    hostname: str | None = None
    local: bool = False
    wraps: ExecutionLocation | None = None

    def __str__(self) -> str:
        """Return ``deployment[/service]/name``."""
        if self.service:
            return f"{self.deployment}/{self.service}/{self.name}"
        return f"{self.deployment}/{self.name}"


class WrapsConfig(msgspec.Struct, frozen=True):
    """The deployment (and optionally service) another deployment is stacked on."""

    deployment: str
    service: str | None = None


class DeploymentConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment as declared in ``streamflow.yml``.

    Attributes:
        name: the deployment name.
        type: the connector name in the plugin registry (``local``, ``ssh``, ``docker``, ...).
        config: the connector's keyword arguments, validated by its ``get_schema()``.
        external: the deployment is managed by someone else: never created nor destroyed.
        lazy: deploy on first use rather than at start-up.
        scheduling_policy: name of the policy in ``scheduling.policies``; ``None`` means
            the default data-locality policy.
        workdir: the base working directory on its locations.
        wraps: the deployment this one is stacked on.
    """

    name: str
    type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    external: bool = False
    lazy: bool = True
    scheduling_policy: str | None = None
    workdir: str | None = None
    wraps: WrapsConfig | None = None


class FilterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A binding filter as declared in ``bindingFilters``."""

    name: str
    type: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


class Service(msgspec.Struct, frozen=True, kw_only=True):
    """A named service of a deployment, with its connector-specific options."""

    name: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)


def default_workdir(deployment: DeploymentConfig) -> str:
    """Return the working directory to use on ``deployment`` when none is configured."""
    if deployment.workdir:
        return deployment.workdir
    if deployment.type == "local":
        return os.path.join(os.path.realpath(tempfile.gettempdir()), "streamflow")
    return "/tmp/streamflow"


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """Where a step is bound: a deployment, optionally a service, and how many locations.

    Attributes:
        deployment: the deployment.
        locations: how many locations a job needs.
        service: the service within the deployment.
        workdir: the working directory; defaults to the deployment's, then to a temp dir.
    """

    deployment: DeploymentConfig
    locations: int = 1
    service: str | None = None
    workdir: str | None = None

    @property
    def effective_workdir(self) -> str:
        """The working directory jobs use: the target's, else the deployment's, else a default."""
        return self.workdir or default_workdir(self.deployment)


def _local_deployment() -> DeploymentConfig:
    return DeploymentConfig(name=LOCAL_DEPLOYMENT, type="local", external=True, lazy=False)


class LocalTarget(Target, frozen=True, kw_only=True):
    """A target on the implicit local deployment ``__LOCAL__`` (type ``local``, external, not lazy)."""

    deployment: DeploymentConfig = msgspec.field(default_factory=_local_deployment)


class BindingConfig(msgspec.Struct, frozen=True, kw_only=True):
    """The binding of a step: candidate targets, and the filters that order them."""

    targets: list[Target]
    filters: list[FilterConfig] = msgspec.field(default_factory=list)


class BindingFilter(SchemaEntity):
    """Chooses and orders the targets of a job among those of its binding.

    Args:
        name: the filter name in ``bindingFilters``.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    async def get_targets(self, job: Job, targets: list[Target]) -> list[Target]:
        """Return the targets to try for ``job``, in order of preference."""


class Connector(SchemaEntity):
    """Runs commands and moves data on the locations of one deployment.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``; relative paths in the config are
            resolved against it.
    """

    def __init__(self, deployment_name: str, config_dir: str) -> None:
        self.deployment_name = deployment_name
        self.config_dir = config_dir

    @abstractmethod
    async def deploy(self, external: bool) -> None:
        """Bring the deployment up (or, if ``external``, only connect to it).

        Raises:
            streamflow.errors.DeploymentError: if the deployment cannot be brought up.
        """

    @abstractmethod
    async def undeploy(self, external: bool) -> None:
        """Tear the deployment down (or, if ``external``, only disconnect). Idempotent.

        Raises:
            streamflow.errors.DeploymentError: if the deployment cannot be torn down.
        """

    @abstractmethod
    async def get_available_locations(self, service: str | None = None) -> dict[str, AvailableLocation]:
        """Return the locations of ``service`` (or of the whole deployment), by name."""

    @abstractmethod
    async def run(
        self,
        location: ExecutionLocation,
        command: list[str],
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        stdin: int | str | None = None,
        stdout: int | str | None = None,
        stderr: int | str | None = None,
        capture_output: bool = False,
        timeout: float | None = None,
        job_name: str | None = None,
    ) -> tuple[str, int] | int | None:
        """Run ``command`` (an argument list, never a shell string) on ``location``.

        Args:
            location: where to run.
            command: the program and its arguments.
            environment: variables added to (and overriding) the location's environment.
            workdir: the working directory; ``None`` means the connector's default.
            stdin: a path on the location to read standard input from; ``None`` means empty.
            stdout: a path on the location to write standard output to; ``None`` means
                captured if ``capture_output`` and discarded otherwise.
            stderr: a path on the location to write standard error to; ``None`` means the same
                destination as standard output (merged); ``subprocess.DEVNULL`` discards it.
            capture_output: return the output instead of only the exit code.
            timeout: seconds after which the command (with all its children) is killed.
            job_name: the job this command belongs to; batch connectors use it as the name of
                the submission.

        Returns:
            ``(output, exit_code)`` when ``capture_output`` is true, where ``output`` is the text
            written to standard output (and standard error unless redirected), decoded as UTF-8
            with replacement and stripped of trailing whitespace, or ``""`` when standard output
            went to a file; otherwise the exit code as an ``int``. A connector returns ``None``
            only when it cannot know the exit code (detached submissions); it documents when.
            A non-zero exit code is a result, not an error.

        Raises:
            streamflow.errors.RemoteCommandError: if the command could not be started or the
                location is unreachable.
            streamflow.core.exception.CommandTimeoutError: if ``timeout`` expired.
        """

    @abstractmethod
    async def copy_local_to_remote(
        self, src: str, dst: str, locations: Sequence[ExecutionLocation], read_only: bool = False
    ) -> None:
        """Copy the local file or directory ``src`` to ``dst`` on each of ``locations``.

        Args:
            src: a path on this machine.
            dst: the destination path (not its parent) on the locations.
            locations: the destinations.
            read_only: the copy will not be modified, so a link may be used instead.

        Raises:
            streamflow.errors.TransferError: if the copy failed.
        """

    @abstractmethod
    async def copy_remote_to_local(
        self, src: str, dst: str, location: ExecutionLocation, read_only: bool = False
    ) -> None:
        """Copy ``src`` on ``location`` to the local path ``dst``.

        Raises:
            streamflow.errors.TransferError: if the copy failed.
        """

    @abstractmethod
    async def copy_remote_to_remote(
        self,
        src: str,
        dst: str,
        locations: Sequence[ExecutionLocation],
        source_location: ExecutionLocation,
        source_connector: Connector | None = None,
        read_only: bool = False,
    ) -> None:
        """Copy ``src`` on ``source_location`` to ``dst`` on each of ``locations``.

        Args:
            src: the source path.
            dst: the destination path.
            locations: destinations served by this connector.
            source_location: where ``src`` lives.
            source_connector: the connector serving ``source_location``; ``None`` means this one.
            read_only: the copy will not be modified, so a link may be used instead.

        Raises:
            streamflow.errors.TransferError: if the copy failed.
        """

    @abstractmethod
    def get_stream_reader(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Return an async context manager streaming the standard output of ``command``.

        Leaving the context waits for the command; a failure exit raises
        :class:`~streamflow.errors.TransferError`.
        """

    @abstractmethod
    def get_stream_writer(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Return an async context manager streaming into the standard input of ``command``.

        Leaving the context closes the input and waits for the command; a failure exit raises
        :class:`~streamflow.errors.TransferError`.
        """


class DeploymentManager(SchemaEntity):
    """Deploys and undeploys the deployments of a run, and hands out their connectors.

    Args:
        context: the StreamFlow context.
    """

    def __init__(self, context: StreamFlowContext) -> None:
        self.context = context

    @abstractmethod
    async def deploy(self, deployment_config: DeploymentConfig) -> None:
        """Deploy ``deployment_config`` (and what it wraps) unless it is already deployed.

        Raises:
            streamflow.errors.DeploymentError: if a connector failed to deploy.
            streamflow.errors.ConfigError: if the ``wraps`` chain is unknown or circular.
        """

    @abstractmethod
    async def undeploy(self, deployment_name: str) -> None:
        """Undeploy ``deployment_name`` (and first what wraps it). Unknown names are ignored."""

    @abstractmethod
    async def undeploy_all(self) -> None:
        """Undeploy every deployment, in the reverse order of deployment."""

    @abstractmethod
    async def get_connector(self, deployment_name: str) -> Connector | None:
        """Return the connector of ``deployment_name``, deploying it if it is lazy and known.

        Returns:
            The connector, or ``None`` if no deployment has that name.
        """

    @abstractmethod
    async def close(self) -> None:
        """Undeploy everything and release resources. Idempotent."""
