"""The ``docker`` connector: containers started from an image with the ``docker`` (or ``podman``) CLI."""

from __future__ import annotations

import os
import shlex
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from streamflow.connectors._container import ContainerConnector
from streamflow.core.deployment import Connector, ExecutionLocation
from streamflow.errors import ConfigError, DeploymentError

__all__ = ["DockerConnector", "EngineMixin", "engine_schema"]

_SCHEMA_BASE = "https://streamflow.di.unito.it/schemas/deployment/connector"


def engine_schema() -> dict[str, Any]:
    """The schema properties that choose the container engine and how to reach it."""
    return {
        "engine": {
            "type": "string",
            "enum": ["auto", "docker", "podman"],
            "default": "auto",
            "description": "The client CLI: `docker`, `podman`, or `auto` (`docker` when installed, "
            "else `podman`). With `docker`, a Podman API socket in `dockerHost` works too",
        },
        "dockerHost": {
            "type": "string",
            "description": "The engine's address (e.g. `unix:///run/podman/podman.sock`); "
            "default: the `DOCKER_HOST` environment variable, then the client's default",
        },
        "transferBufferSize": {
            "type": "integer",
            "minimum": 1,
            "default": 2**16,
            "description": "Bytes per chunk for copies streamed through this process",
        },
    }


class EngineMixin(ContainerConnector):
    """Chooses the engine CLI and runs ``exec``/``cp`` through it (shared with ``docker-compose``).

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        engine: ``auto``, ``docker`` or ``podman``.
        docker_host: the engine's address, if not the client's default.
        transfer_buffer_size: bytes per chunk for streamed copies.
    """

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        engine: str = "auto",
        docker_host: str | None = None,
        transfer_buffer_size: int = 2**16,
    ) -> None:
        super().__init__(deployment_name, config_dir, transfer_buffer_size)
        if engine not in ("auto", "docker", "podman"):
            raise ConfigError(
                f"deployment {deployment_name!r}: engine must be auto, docker or podman, not {engine!r}"
            )
        if engine == "auto":
            engine = "docker" if shutil.which("docker") or not shutil.which("podman") else "podman"
        self.engine = engine
        self.docker_host = docker_host
        self.client_name = engine

    def client_env(self) -> dict[str, str] | None:
        """This process's environment, with ``DOCKER_HOST`` set from ``dockerHost``."""
        if self.docker_host and self.engine == "docker":
            return {**os.environ, "DOCKER_HOST": self.docker_host}
        return None

    def engine_argv(self, *args: str) -> list[str]:
        """``docker ARGS...`` (or ``podman [--url HOST] ARGS...``)."""
        if self.engine == "podman" and self.docker_host:
            return ["podman", "--url", self.docker_host, *args]
        return [self.engine, *args]

    def same_engine(self, other: Connector) -> bool:
        """Whether ``other`` uses the same engine CLI at the same address."""
        return (
            isinstance(other, EngineMixin)
            and other.engine == self.engine
            and (other.docker_host or os.environ.get("DOCKER_HOST"))
            == (self.docker_host or os.environ.get("DOCKER_HOST"))
        )

    def exec_argv(
        self,
        location: ExecutionLocation,
        command: Sequence[str],
        *,
        interactive: bool = False,
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> list[str]:
        """``docker exec [-i] [-w WORKDIR] [-e K=V]... CONTAINER COMMAND...``."""
        argv = self.engine_argv("exec")
        if interactive:
            argv.append("-i")
        if workdir:
            argv += ["-w", workdir]
        for key, value in (environment or {}).items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, location.name, *command]

    def tar_out_argv(self, location: ExecutionLocation, src: str) -> list[str]:
        """``docker cp -L CONTAINER:SRC -`` (no ``tar`` needed in the container; podman has no ``-L``)."""
        follow = ["-L"] if self.engine == "docker" else []
        return self.engine_argv("cp", *follow, f"{location.name}:{src}", "-")

    def tar_in_argv(self, location: ExecutionLocation, directory: str) -> list[str]:
        """``docker cp - CONTAINER:DIRECTORY``."""
        return self.engine_argv("cp", "-", f"{location.name}:{directory}")

    async def running(self, names: Sequence[str]) -> dict[str, bool]:
        """Whether each of the containers ``names`` exists and runs (absent ones map to ``False``)."""
        result = dict.fromkeys(names, False)
        for name in names:
            inspect = await self.client(self.engine_argv("inspect", "--format", "{{.State.Running}}", name))
            result[name] = inspect.returncode == 0 and inspect.stdout.strip() == b"true"
        return result

    async def ping(self) -> None:
        """Check that the engine answers.

        Raises:
            DeploymentError: if the client is missing or no engine answers at its address.
        """
        result = await self.client(self.engine_argv("version", "--format", "{{.Server.Version}}"), timeout=60)
        if result.returncode != 0:
            where = self.docker_host or os.environ.get("DOCKER_HOST") or "the default address"
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: no {self.engine} engine answers at {where} "
                f"(set dockerHost, or engine: podman): {result.error}"
            )


class DockerConnector(EngineMixin):
    """Starts ``replicas`` containers from ``image`` and runs commands in them with ``docker exec``.

    Each container is a location named after it. Containers run ``sleep infinity`` (as their
    entrypoint) unless ``command`` or ``entrypoint`` is given. Copies are ``docker cp`` tar
    streams, committed atomically with ``mv`` inside the container. With ``external: true`` the
    containers named ``name`` (``name-1``...``name-N`` with replicas) must already run: they are
    used, never created nor removed.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        image: the image to start.
        name: the container name (``<name>-<i>`` with several replicas); default a unique one.
        command: the container's command (a list, or a string split like a shell would).
        entrypoint: overrides the image's entrypoint.
        env: environment variables of the containers.
        volume: volumes (``-v`` arguments, ``SRC:DST[:OPTS]``); relative sources are resolved
            against ``config_dir``.
        volumes: the same as ``volume`` (both may be given).
        workdir: the containers' working directory (``docker run -w``).
        network: the network to connect the containers to.
        user: the user (``NAME|UID[:GROUP|GID]``) the containers run as.
        replicas: how many containers to start.
        labels: labels of the containers.
        engine: ``auto``, ``docker`` or ``podman``.
        dockerHost: the engine's address.
        transferBufferSize: bytes per chunk for streamed copies.
    """

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        image: str,
        name: str | None = None,
        command: str | list[str] | None = None,
        entrypoint: str | None = None,
        env: Mapping[str, Any] | None = None,
        volume: Sequence[str] | None = None,
        volumes: Sequence[str] | None = None,
        workdir: str | None = None,
        network: str | None = None,
        user: str | None = None,
        replicas: int = 1,
        labels: Mapping[str, str] | None = None,
        engine: str = "auto",
        dockerHost: str | None = None,
        transferBufferSize: int = 2**16,
    ) -> None:
        super().__init__(deployment_name, config_dir, engine, dockerHost, transferBufferSize)
        if replicas < 1:
            raise ConfigError(f"deployment {deployment_name!r}: replicas must be at least 1, not {replicas}")
        self.image = image
        self.name = name
        self.command = shlex.split(command) if isinstance(command, str) else list(command or [])
        self.entrypoint = entrypoint
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.volumes = [self._volume(v) for v in [*(volume or []), *(volumes or [])]]
        self.workdir = workdir
        self.network = network
        self.user = user
        self.replicas = replicas
        self.labels = dict(labels or {})
        self.container_names = self._names(name or f"streamflow-{deployment_name}-{uuid.uuid4().hex[:8]}")
        self._created: list[str] = []

    def _volume(self, spec: str) -> str:
        source, sep, rest = spec.partition(":")
        if sep and (source.startswith(".") or "/" in source) and not os.path.isabs(source):
            return f"{os.path.normpath(os.path.join(self.config_dir, source))}:{rest}"
        return spec

    def _names(self, base: str) -> list[str]:
        safe = "".join(c if c.isalnum() or c in "_.-" else "-" for c in base)
        return [safe] if self.replicas == 1 else [f"{safe}-{i}" for i in range(1, self.replicas + 1)]

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``docker`` deployment's ``config``."""
        strings = {"type": "array", "items": {"type": "string"}}
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{_SCHEMA_BASE}/docker.json",
            "type": "object",
            "properties": {
                "image": {"type": "string", "description": "The image to start the containers from"},
                "name": {
                    "type": "string",
                    "description": "The container name (`<name>-<i>` with several replicas); required "
                    "with `external: true`; default a unique `streamflow-<deployment>-<id>`",
                },
                "command": {
                    "oneOf": [{"type": "string"}, strings],
                    "description": "The containers' command; default `sleep infinity` (as entrypoint)",
                },
                "entrypoint": {"type": "string", "description": "Overrides the image's entrypoint"},
                "env": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                    "description": "Environment variables of the containers",
                },
                "volume": {**strings, "description": "Volumes, as `SRC:DST[:OPTS]` (`docker run -v`)"},
                "volumes": {**strings, "description": "The same as `volume`"},
                "workdir": {"type": "string", "description": "The containers' working directory"},
                "network": {"type": "string", "description": "The network to connect the containers to"},
                "user": {"type": "string", "description": "The user the containers run as (`UID[:GID]`)"},
                "replicas": {
                    "type": "integer",
                    "minimum": 1,
                    "default": 1,
                    "description": "How many containers to start (one location each)",
                },
                "labels": {
                    "type": "object",
                    "additionalProperties": {"type": "string"},
                    "description": "Labels of the containers",
                },
                **engine_schema(),
            },
            "required": ["image"],
            "additionalProperties": False,
        }

    def run_argv(self, name: str) -> list[str]:
        """The ``docker run -d`` argv that starts the container ``name``."""
        argv = self.engine_argv(
            "run", "-d", "--name", name, "--label", f"streamflow.deployment={self.deployment_name}"
        )
        for key, value in self.labels.items():
            argv += ["--label", f"{key}={value}"]
        for key, value in self.env.items():
            argv += ["-e", f"{key}={value}"]
        for spec in self.volumes:
            argv += ["-v", spec]
        for flag, option in (("-w", self.workdir), ("--network", self.network), ("--user", self.user)):
            if option:
                argv += [flag, option]
        command = self.command
        if self.entrypoint:
            argv += ["--entrypoint", self.entrypoint]
        elif not command:
            argv += ["--entrypoint", "sleep"]
            command = ["infinity"]
        return [*argv, self.image, *command]

    async def deploy(self, external: bool) -> None:
        """Start the containers (or, if ``external``, check that they run).

        Raises:
            ConfigError: if ``external`` and no ``name`` is configured.
            DeploymentError: if the engine does not answer or a container does not start.
        """
        if external and not self.name:
            raise ConfigError(
                f"deployment {self.deployment_name!r}: an external docker deployment needs `name`"
            )
        await self.ping()
        if external:
            stopped = [n for n, up in (await self.running(self.container_names)).items() if not up]
            if stopped:
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: external container(s) not running: {', '.join(stopped)}",
                    retryable=False,
                )
            return
        try:
            for name in self.container_names:
                result = await self.client(self.run_argv(name))
                if result.returncode != 0:
                    raise DeploymentError(
                        f"deployment {self.deployment_name!r}: cannot start container {name!r}: {result.error}"
                    )
                self._created.append(name)
            for name, up in (await self.running(self.container_names)).items():
                if not up:
                    logs = await self.client(self.engine_argv("logs", name))
                    raise DeploymentError(
                        f"deployment {self.deployment_name!r}: container {name!r} exited at start: {logs.error}",
                        retryable=False,
                    )
        except BaseException:
            await self.undeploy(external)
            raise

    async def undeploy(self, external: bool) -> None:
        """Remove the containers :meth:`deploy` started (never others). Idempotent."""
        created, self._created = self._created, []
        if created:
            result = await self.client(self.engine_argv("rm", "-f", *created))
            if result.returncode != 0 and b"no such container" not in result.stderr.lower():
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: cannot remove containers: {result.error}"
                )
        self._hardware.clear()

    async def locations(self, service: str | None = None) -> dict[str, ExecutionLocation]:
        """The running containers of this deployment."""
        up = await self.running(self.container_names)
        return {
            name: ExecutionLocation(
                name=name, deployment=self.deployment_name, service=service, hostname=name
            )
            for name in self.container_names
            if up[name]
        }
