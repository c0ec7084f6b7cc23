"""The ``singularity`` connector (alias ``apptainer``): a Singularity/Apptainer instance as one location."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from streamflow.connectors._container import ContainerConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.errors import DeploymentError

__all__ = ["SingularityConnector", "singularity_client"]


def singularity_client() -> str | None:
    """The installed client: ``apptainer`` if present, else ``singularity``, else ``None``."""
    for name in ("apptainer", "singularity"):
        if shutil.which(name):
            return name
    return None


class SingularityConnector(ContainerConnector):
    """Starts an instance of ``image`` and runs commands in it with ``exec instance://NAME``.

    The instance is the only location, named after it. Copies are tar streams through
    ``exec`` (the image needs ``sh``, ``tar``, ``mkdir``, ``mv``, ``rm``); bound host paths are
    copied like any other. With ``external: true`` the instance ``instanceName`` must already
    run: it is used, never started nor stopped.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``; a relative ``image`` path and relative
            bind sources are resolved against it.
        image: the image (a SIF file, a sandbox directory, or a ``docker://``... URI).
        instanceName: the instance name; default a unique ``streamflow-<deployment>-<id>``.
        bind: bind mounts (``SRC[:DST[:OPTS]]``).
        env: environment variables of the instance.
        options: further options of ``instance start`` (e.g. ``--containall``).
        client: ``singularity`` or ``apptainer``; default the one installed.
        transferBufferSize: bytes per chunk for streamed copies.
    """

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        image: str,
        instanceName: str | None = None,
        bind: Sequence[str] | None = None,
        env: Mapping[str, Any] | None = None,
        options: Sequence[str] | None = None,
        client: str | None = None,
        transferBufferSize: int = 2**16,
    ) -> None:
        super().__init__(deployment_name, config_dir, transferBufferSize)
        local = "://" not in image and not os.path.isabs(image)
        self.image = os.path.normpath(os.path.join(config_dir, image)) if local else image
        safe = "".join(c if c.isalnum() or c in "_-" else "-" for c in deployment_name)
        self.instance = instanceName or f"streamflow-{safe}-{uuid.uuid4().hex[:8]}"
        self.bind = [self._bind(b) for b in bind or []]
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        self.options = list(options or [])
        self.client_name = client or singularity_client() or "singularity"
        self._started = False

    def _bind(self, spec: str) -> str:
        source, sep, rest = spec.partition(":")
        if not os.path.isabs(source):
            source = os.path.normpath(os.path.join(self.config_dir, source))
        return f"{source}{sep}{rest}"

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``singularity`` deployment's ``config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://streamflow.di.unito.it/schemas/deployment/connector/singularity.json",
            "type": "object",
            "properties": {
                "image": {
                    "type": "string",
                    "description": "The image: a SIF file or sandbox directory (relative to the directory "
                    "of streamflow.yml), or a URI such as `docker://...`",
                },
                "instanceName": {
                    "type": "string",
                    "description": "The instance name; required with `external: true`; default a unique one",
                },
                "bind": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Bind mounts, as `SRC[:DST[:OPTS]]`",
                },
                "env": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                    "description": "Environment variables of the instance",
                },
                "options": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Further options of `instance start` (e.g. `--containall`)",
                },
                "client": {
                    "type": "string",
                    "enum": ["singularity", "apptainer"],
                    "description": "The client CLI; default `apptainer` if installed, else `singularity`",
                },
                "transferBufferSize": {
                    "type": "integer",
                    "minimum": 1,
                    "default": 2**16,
                    "description": "Bytes per chunk for copies streamed through this process",
                },
            },
            "required": ["image"],
            "additionalProperties": False,
        }

    def client_env(self) -> dict[str, str] | None:
        """This process's environment."""
        return None

    def start_argv(self) -> list[str]:
        """``singularity instance start [--bind B]... [--env K=V]... [OPTIONS] IMAGE NAME``."""
        argv = [self.client_name, "instance", "start"]
        for spec in self.bind:
            argv += ["--bind", spec]
        for key, value in self.env.items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, *self.options, self.image, self.instance]

    def exec_argv(
        self,
        location: ExecutionLocation,
        command: Sequence[str],
        *,
        interactive: bool = False,
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> list[str]:
        """``singularity exec [--pwd WORKDIR] [--env K=V]... instance://NAME COMMAND...``."""
        argv = [self.client_name, "exec"]
        if workdir:
            argv += ["--pwd", workdir]
        for key, value in (environment or {}).items():
            argv += ["--env", f"{key}={value}"]
        return [*argv, f"instance://{location.name}", *command]

    async def _instance_running(self) -> bool:
        result = await self.client([self.client_name, "instance", "list", self.instance])
        return result.returncode == 0 and self.instance.encode() in result.stdout

    async def deploy(self, external: bool) -> None:
        """Start the instance (or, if ``external``, check that it runs).

        Raises:
            DeploymentError: if the client is missing, or the instance does not start or run.
        """
        if singularity_client() is None and shutil.which(self.client_name) is None:
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: neither apptainer nor singularity is installed",
                retryable=False,
            )
        if not external:
            await self.checked(self.start_argv(), f"start instance {self.instance!r} of {self.image}")
            self._started = True
        if not await self._instance_running():
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: instance {self.instance!r} is not running",
                retryable=False,
            )

    async def undeploy(self, external: bool) -> None:
        """Stop the instance :meth:`deploy` started (never an external one). Idempotent."""
        if self._started:
            self._started = False
            await self.checked(
                [self.client_name, "instance", "stop", self.instance], f"stop instance {self.instance!r}"
            )
        self._hardware.clear()

    async def locations(self, service: str | None = None) -> dict[str, ExecutionLocation]:
        """The instance, if it runs."""
        if not await self._instance_running():
            return {}
        location = ExecutionLocation(name=self.instance, deployment=self.deployment_name, service=service)
        return {self.instance: location}
