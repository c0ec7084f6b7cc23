"""The ``docker-compose`` connector: the services of compose files, one location per container."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from streamflow.connectors.docker import EngineMixin, engine_schema
from streamflow.core.deployment import ExecutionLocation
from streamflow.errors import ConfigError, DeploymentError

__all__ = ["DockerComposeConnector", "compose_client"]

_PROJECT_LABEL = "com.docker.compose.project"
_SERVICE_LABEL = "com.docker.compose.service"


def compose_client() -> list[str] | None:
    """The first compose client that answers here: ``docker compose``, ``docker-compose``, ``podman-compose``.

    ``podman-compose`` is also looked for beside this Python interpreter (a virtual environment).
    """
    candidates: list[list[str]] = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for name in ("docker-compose", "podman-compose"):
        path = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
        if path:
            candidates.append([path])
    for argv in candidates:
        try:
            result = subprocess.run([*argv, "version"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if result.returncode == 0:
            return argv
    return None


class DockerComposeConnector(EngineMixin):
    """Brings compose files up with a compose client; each service is a StreamFlow service.

    Every running container of a service is a location of that service, named after the
    container. Commands and copies go through the engine CLI (``docker exec``/``docker cp``),
    as in the ``docker`` connector. ``deploy`` runs ``up -d`` (unless ``external``: the project
    must then be up already) and ``undeploy`` runs ``down`` on what it brought up.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``; relative ``files`` are resolved against it.
        files: the compose files.
        projectName: the compose project name; default ``streamflow-<deployment>``.
        client: the compose client command; default the first that answers among
            ``docker compose``, ``docker-compose`` and ``podman-compose``.
        wait: seconds ``up`` may take.
        engine: ``auto``, ``docker`` or ``podman`` (for ``exec`` and ``cp``).
        dockerHost: the engine's address.
        transferBufferSize: bytes per chunk for streamed copies.
        compatibility: pass ``--compatibility`` (compose v1 files' ``deploy`` keys honoured).
    """

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        files: Sequence[str],
        projectName: str | None = None,
        client: str | Sequence[str] | None = None,
        wait: float = 300,
        engine: str = "auto",
        dockerHost: str | None = None,
        transferBufferSize: int = 2**16,
        compatibility: bool = False,
    ) -> None:
        super().__init__(deployment_name, config_dir, engine, dockerHost, transferBufferSize)
        self.compatibility = compatibility
        if not files:
            raise ConfigError(f"deployment {deployment_name!r}: `files` needs at least one compose file")
        self.files = [os.path.normpath(os.path.join(config_dir, f)) for f in files]
        safe = "".join(c if c.isalnum() or c in "_-" else "-" for c in deployment_name.lower())
        self.project = projectName or f"streamflow-{safe}"
        self.client_argv: list[str] | None = (
            [client] if isinstance(client, str) else (list(client) if client else None)
        )
        self.wait = wait
        self._up = False

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``docker-compose`` deployment's ``config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://streamflow.di.unito.it/schemas/deployment/connector/docker-compose.json",
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "description": "The compose files, relative to the directory of streamflow.yml",
                },
                "projectName": {
                    "type": "string",
                    "description": "The compose project name; default `streamflow-<deployment>`",
                },
                "client": {
                    "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                    "description": "The compose client command; default the first that answers among "
                    "`docker compose`, `docker-compose` and `podman-compose`",
                },
                "wait": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "default": 300,
                    "description": "Seconds `up` may take",
                },
                "compatibility": {
                    "type": "boolean",
                    "default": False,
                    "description": "Run the compose client with `--compatibility`",
                },
                **engine_schema(),
            },
            "required": ["files"],
            "additionalProperties": False,
        }

    def compose_argv(self, *args: str) -> list[str]:
        """``<client> -f FILE... -p PROJECT ARGS...``.

        Raises:
            DeploymentError: if no compose client is installed.
        """
        if self.client_argv is None:
            self.client_argv = compose_client()
            if self.client_argv is None:
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: no compose client is installed "
                    "(docker compose, docker-compose or podman-compose)",
                    retryable=False,
                )
        argv = list(self.client_argv)
        for path in self.files:
            argv += ["-f", path]
        flags = ["--compatibility"] if self.compatibility else []
        return [*argv, *flags, "-p", self.project, *args]

    def client_env(self) -> dict[str, str] | None:
        """This process's environment, with ``DOCKER_HOST`` from ``dockerHost`` (for both clients)."""
        if self.docker_host:
            return {**os.environ, "DOCKER_HOST": self.docker_host}
        return None

    async def deploy(self, external: bool) -> None:
        """Run ``up -d`` (or, if ``external``, check that the project has running containers).

        Raises:
            DeploymentError: if ``up`` fails or no container of the project runs.
        """
        missing = [f for f in self.files if not os.path.isfile(f)]
        if missing:
            raise ConfigError(
                f"deployment {self.deployment_name!r}: compose file(s) not found: {', '.join(missing)}"
            )
        if not external:
            try:
                result = await self.client(self.compose_argv("up", "-d"), timeout=self.wait)
            except TimeoutError as exc:
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: `up` took over {self.wait} s"
                ) from exc
            self._up = True
            if result.returncode != 0:
                await self.undeploy(external)
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: compose up failed: {result.error}"
                )
        if not await self.locations():
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: no running container in project {self.project!r}",
                retryable=False,
            )

    async def undeploy(self, external: bool) -> None:
        """Run ``down`` if :meth:`deploy` ran ``up`` (never on an external project). Idempotent."""
        if not self._up:
            return
        self._up = False
        self._hardware.clear()
        result = await self.client(self.compose_argv("down", "-t", "0"), timeout=self.wait)
        if result.returncode != 0:
            raise DeploymentError(f"deployment {self.deployment_name!r}: compose down failed: {result.error}")

    async def locations(self, service: str | None = None) -> dict[str, ExecutionLocation]:
        """The running containers of the project (of ``service`` if given), by container name."""
        listing = await self.client(
            self.engine_argv("ps", "-q", "--no-trunc", "--filter", f"label={_PROJECT_LABEL}={self.project}")
        )
        ids = listing.stdout.decode().split()
        if listing.returncode != 0 or not ids:
            return {}
        inspect = await self.client(self.engine_argv("inspect", *ids))
        if inspect.returncode != 0:
            return {}
        result: dict[str, ExecutionLocation] = {}
        for container in json.loads(inspect.stdout or b"[]"):
            labels = (container.get("Config") or {}).get("Labels") or {}
            name = str(container.get("Name", "")).lstrip("/")
            svc = labels.get(_SERVICE_LABEL)
            if not name or not (container.get("State") or {}).get("Running"):
                continue
            if service is None or svc == service:
                result[name] = ExecutionLocation(
                    name=name, deployment=self.deployment_name, service=svc, hostname=name
                )
        return dict(sorted(result.items()))
