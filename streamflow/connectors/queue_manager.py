"""The base of batch-queue connectors (``slurm``, ``pbs``, ``flux``).

A queue manager is reached through the connector it ``wraps`` (an ``ssh`` deployment to the
login node, say) or, without ``wraps``, through a :class:`~streamflow.connectors.local.LocalConnector`
of this machine. Each job becomes a batch script written to its working directory on the login
node, submitted to the queue and polled until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
import re
import subprocess
import tempfile
import uuid
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import structlog

from streamflow.connectors.base import ConnectorWrapper
from streamflow.connectors.batch import (
    PLACEHOLDER,
    JobStatus,
    command_line,
    connector_schema,
    render_template,
)
from streamflow.connectors.local import LocalConnector
from streamflow.core.data import StreamWrapper
from streamflow.core.deployment import LOCAL_DEPLOYMENT, Connector, ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.core.scheduling import AvailableLocation, Hardware
from streamflow.errors import ConfigError, DeploymentError, RemoteCommandError

__all__ = ["QueueManagerConnector"]

_log = structlog.get_logger(__name__)

_MAX_POLL_ERRORS = 5
"""Consecutive failed status queries tolerated before a job is given up as unreachable."""
_MAX_MISSING = 3
"""Polls during which an ended job may still lack its exit code (shared file systems lag)."""


@dataclass(frozen=True)
class _JobFiles:
    """The paths of one submission on the login node."""

    script: str
    rc: str
    stdout: str
    stderr: str | None
    capture: str | None


class QueueManagerConnector(ConnectorWrapper):
    """Runs jobs as batch submissions to a queue manager reached through a wrapped connector.

    ``run`` with a ``job_name`` writes a batch script (the service's directives, then the
    command in a subshell that changes to ``workdir``, exports ``environment`` and reads
    ``stdin``) to the working directory on the login node, submits it, and polls the queue every
    ``pollingInterval`` seconds until it ends; at most ``maxConcurrentJobs`` jobs are in the queue
    at once. A ``run`` without ``job_name`` (the small probes of the data manager, such as
    ``mkdir -p`` or ``test -e``) runs directly on the login node.

    The batch nodes are assumed to share the login node's file system (as on every cluster
    with a shared home or scratch): copies and streams go to the login node through the wrapped
    connector, and a job's files written there are seen by the job. The script and its
    exit-code file (``.sf-<id>.sh``, ``.sf-<id>.rc``) live in the job's working directory while
    the job runs, and are removed when it ends.

    A timeout counts from submission (the time in the queue included); on timeout, on
    cancellation of the calling task and on :meth:`undeploy` the submitted jobs are cancelled
    in the queue.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``; ``file`` paths are relative to it.
        connector: the connector of the wrapped deployment (the login node); ``None`` means this
            machine, through a local connector this one creates.
        service: the service of the wrapped deployment to run on, if any.
        file: a batch-script template; ``{{ streamflow_command }}`` marks where the job's command
            goes (no other template syntax is supported).
        services: named option sets; a target's ``service`` picks one.
        maxConcurrentJobs: how many jobs may be in the queue at once.
        pollingInterval: seconds between two status queries of a job.

    Raises:
        streamflow.errors.ConfigError: if the config is invalid (naming the deployment and field).
    """

    directive: ClassVar[str] = "#"
    """The prefix of the scheduler's directives in a batch script (``#SBATCH``, ``#PBS``)."""
    submit_program: ClassVar[str] = ""
    """The submission program, looked for on the login node at deploy time."""
    kind: ClassVar[str] = ""
    """The connector's name in the plugin registry."""

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        connector: Connector | None = None,
        service: str | None = None,
        file: str | None = None,
        services: Mapping[str, Mapping[str, Any]] | None = None,
        maxConcurrentJobs: int = 1,
        pollingInterval: float = 5.0,
    ) -> None:
        self._own_connector = connector is None
        super().__init__(
            deployment_name, config_dir, connector or LocalConnector(LOCAL_DEPLOYMENT, config_dir), service
        )
        if not isinstance(maxConcurrentJobs, int) or maxConcurrentJobs < 1:
            raise self._config_error(
                "maxConcurrentJobs", f"must be a positive integer, not {maxConcurrentJobs!r}"
            )
        if not isinstance(pollingInterval, int | float) or pollingInterval <= 0:
            raise self._config_error("pollingInterval", f"must be a positive number, not {pollingInterval!r}")
        self.max_concurrent_jobs = maxConcurrentJobs
        self.polling_interval = float(pollingInterval)
        self.template = self._load_template(file, "file") if file else None
        self.services: dict[str, dict[str, Any]] = {}
        self.templates: dict[str, str] = {}
        allowed = self.service_properties()
        for name, options in (services or {}).items():
            if not isinstance(options, Mapping):
                raise self._config_error(f"services.{name}", "must be a mapping of options")
            for key, value in options.items():
                if key not in allowed and key != "file":
                    raise self._config_error(f"services.{name}.{key}", "unknown option")
                if "\n" in str(value) or "\r" in str(value):
                    raise self._config_error(f"services.{name}.{key}", "must not contain a line break")
            self.services[name] = {key: value for key, value in options.items() if key != "file"}
            if options.get("file"):
                self.templates[name] = self._load_template(str(options["file"]), f"services.{name}.file")
            try:
                self.service_directives(self.services[name])
            except ValueError as exc:
                raise self._config_error(f"services.{name}", str(exc)) from exc
        self._semaphore = asyncio.Semaphore(maxConcurrentJobs)
        self._jobs: dict[str, ExecutionLocation] = {}
        self._active = 0  # runs between submission and the removal of their files
        self._idle = asyncio.Event()  # set when no run is active
        self._idle.set()
        self._default_inner: ExecutionLocation | None = None

    # --- configuration --------------------------------------------------------------------------

    def _config_error(self, field: str, message: str) -> ConfigError:
        return ConfigError(f"deployment {self.deployment_name!r} ({self.kind}): {field}: {message}")

    def _load_template(self, file: str, field: str) -> str:
        path = file if os.path.isabs(file) else os.path.join(self.config_dir, file)
        try:
            with open(path, encoding="utf-8") as handle:
                template = handle.read()
        except OSError as exc:
            raise self._config_error(field, f"cannot read {path}: {exc.strerror or exc}") from exc
        if "{%" in template:
            raise self._config_error(field, f"{path}: template statements ({{% ... %}}) are not supported")
        names = set(PLACEHOLDER.findall(template))
        if "streamflow_command" not in names:
            raise self._config_error(field, f"{path}: no {{{{ streamflow_command }}}} placeholder")
        if unknown := names - {"streamflow_command"}:
            raise self._config_error(field, f"{path}: unknown placeholders {sorted(unknown)}")
        return template

    @classmethod
    @abstractmethod
    def service_properties(cls) -> dict[str, dict[str, Any]]:
        """Return the JSON Schema properties of one ``services`` item (``file`` excluded)."""

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of the deployment's ``config``."""
        return connector_schema(cls.kind, cls.directive, cls.service_properties())

    # --- scheduler specifics --------------------------------------------------------------------

    @abstractmethod
    def service_directives(self, options: Mapping[str, Any]) -> list[str]:
        """Return the directive arguments (without the prefix) for a service's ``options``.

        Raises:
            ValueError: if an option value cannot be expressed.
        """

    @abstractmethod
    def submit_command(
        self, script: str, job_name: str, workdir: str | None, stdout: str, stderr: str | None
    ) -> list[str]:
        """Return the argv submitting ``script`` (``stderr`` ``None``: merged with ``stdout``)."""

    @abstractmethod
    def parse_job_id(self, output: str) -> str | None:
        """Return the job id printed by a successful submission, or ``None``."""

    @abstractmethod
    def status_command(self, job_id: str) -> list[str]:
        """Return the argv asking the queue about ``job_id``."""

    @abstractmethod
    def parse_status(self, output: str, exit_code: int) -> JobStatus | None:
        """Return the status in a status query's answer; ``None`` if the queue no longer knows the job.

        Raises:
            RemoteCommandError: if the answer is an error other than "unknown job".
        """

    @abstractmethod
    def cancel_command(self, job_id: str) -> list[str]:
        """Return the argv cancelling ``job_id``."""

    def hardware(self, options: Mapping[str, Any]) -> Hardware | None:
        """Return the hardware a service's ``options`` request, if they say."""
        return None

    def job_name(self, name: str) -> str:
        """Return ``name`` made acceptable to the queue (letters, digits, ``_.-``)."""
        return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "streamflow"

    # --- the batch script -----------------------------------------------------------------------

    def build_script(
        self,
        command: Sequence[str],
        environment: Mapping[str, str] | None = None,
        workdir: str | None = None,
        stdin: str | None = None,
        service: str | None = None,
        rc_file: str | None = None,
    ) -> str:
        """Return the batch script of a job: the template (or a default one) with the directives.

        The service's directives follow the template's first line when it is a ``#!`` line (and
        come first after a ``#!/bin/sh`` added otherwise).

        Raises:
            ConfigError: if ``service`` is not one of ``services``.
        """
        if service is not None and service not in self.services:
            raise self._config_error("services", f"no service named {service!r}")
        options = self.services[service] if service is not None else {}
        directives = [f"{self.directive} {argument}" for argument in self.service_directives(options)]
        line = command_line(command, environment, workdir, stdin, rc_file)
        template = (self.templates.get(service) if service else None) or self.template
        if template is None:
            body = f"{line}\nexit $?\n"
            return "\n".join(["#!/bin/sh", *directives, body])
        rendered = render_template(template, {"streamflow_command": line})
        first, _, rest = rendered.partition("\n")
        if first.startswith("#!"):
            return "\n".join([first, *directives, rest])
        return "\n".join(["#!/bin/sh", *directives, rendered])

    # --- lifecycle ------------------------------------------------------------------------------

    async def deploy(self, external: bool) -> None:
        """Check that the submission program answers on the login node.

        Raises:
            DeploymentError: if it is not found there.
        """
        if self._own_connector:
            await self.connector.deploy(external)
        inner = await self._login_location()
        result = await self.connector.run(
            inner, ["sh", "-c", 'command -v "$1"', "sh", self.submit_program], capture_output=True
        )
        output, code = result if isinstance(result, tuple) else ("", result)
        if code != 0:
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: {self.submit_program} is not found on {inner}"
                f"{': ' + output if output else ''}",
                location=str(inner),
                retryable=False,
            )

    async def undeploy(self, external: bool) -> None:
        """Cancel the jobs still in the queue (and stop the local connector this one created).

        The runs following those jobs return their (failure) exit codes; they are given up to
        three polling intervals (at least 5 s) to see the end before the local connector stops.
        """
        for job_id, inner in list(self._jobs.items()):
            await self._cancel(job_id, inner)
        # Let the runs following those jobs see them end before their login-node connector goes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(3 * self.polling_interval, 5.0)):
                await self._idle.wait()
        self._jobs.clear()
        if self._own_connector:
            await self.connector.undeploy(external)

    async def _login_location(self) -> ExecutionLocation:
        if self._default_inner is None:
            locations = await self.connector.get_available_locations(self.service)
            if not locations:
                raise DeploymentError(
                    f"deployment {self.deployment_name!r}: the wrapped deployment offers no location"
                )
            self._default_inner = next(iter(locations.values())).location
        return self._default_inner

    def _inner(self, location: ExecutionLocation) -> ExecutionLocation:
        if location.wraps is not None:
            return location.wraps
        if self._default_inner is None:
            raise RemoteCommandError(
                f"{location} does not say which login node it wraps (deploy the connector first)",
                location=str(location),
                retryable=False,
            )
        return self._default_inner

    async def get_available_locations(self, service: str | None = None) -> dict[str, AvailableLocation]:
        """Return one location, named after ``service`` (or the deployment), wrapping the login node.

        Its ``slots`` are ``maxConcurrentJobs``; its hardware is what the service's options
        request, when they say.

        Raises:
            ConfigError: if ``service`` is not one of ``services``.
        """
        if service is not None and service not in self.services:
            raise self._config_error("services", f"no service named {service!r}")
        inner_locations = await self.connector.get_available_locations(self.service)
        if not inner_locations:
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: the wrapped deployment offers no location"
            )
        inner = next(iter(inner_locations.values()))
        self._default_inner = self._default_inner or inner.location
        name = service or self.deployment_name
        return {
            name: AvailableLocation(
                name=name,
                deployment=self.deployment_name,
                service=service,
                hostname=inner.hostname,
                local=inner.local,
                slots=self.max_concurrent_jobs,
                hardware=self.hardware(self.services[service]) if service else None,
                wraps=inner,
            )
        }

    # --- commands -------------------------------------------------------------------------------

    async def _probe(
        self, inner: ExecutionLocation, command: list[str], workdir: str | None = None
    ) -> tuple[str, int]:
        result = await self.connector.run(inner, command, workdir=workdir, capture_output=True)
        return result if isinstance(result, tuple) else ("", result or 0)

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
        """Submit ``command`` as a batch job when ``job_name`` is given, else run it on the login node.

        See :meth:`Connector.run`. A job's standard output and error go to the ``stdout`` and
        ``stderr`` files (relative paths are relative to ``workdir``; parents are created), to a
        file read back and removed when ``capture_output``, or nowhere. The exit code is the
        queue's (a signal ``n`` gives 128+n; a job the queue ended without one, as on a node
        failure or a cancellation, gives a non-zero code).
        """
        if not command:
            raise RemoteCommandError("empty command", location=str(location), retryable=False)
        inner = self._inner(location)
        if job_name is None:
            return await self.connector.run(
                inner, command, environment, workdir, stdin, stdout, stderr, capture_output, timeout, None
            )
        files = self._job_files(workdir, stdout, stderr, capture_output)
        script = self.build_script(
            command,
            environment,
            workdir,
            self._path(stdin, workdir) if isinstance(stdin, str) else None,
            location.service,
            files.rc,
        )
        async with self._semaphore:
            prepared = asyncio.ensure_future(self._prepare(inner, workdir, files, script))
            try:
                await asyncio.shield(prepared)
            except BaseException:
                # Cancelled (or failed) while the script was being written: the write may still
                # land, so let it settle before removing what it made (shielded: a second
                # cancellation does not stop the clean-up).
                await asyncio.shield(self._discard(inner, files, prepared))
                raise
            self._active += 1
            self._idle.clear()
            try:
                code = await self._submit_and_wait(inner, files, job_name, workdir, timeout, str(location))
                output = ""
                if files.capture is not None:
                    output, _ = await self._probe(inner, ["cat", files.capture])
            finally:
                leftovers = [files.script, files.rc] + ([files.capture] if files.capture else [])
                try:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._probe(inner, ["rm", "-f", *leftovers]))
                finally:
                    self._active -= 1
                    if not self._active:
                        self._idle.set()
        if capture_output:
            return output.rstrip(), code
        return code

    @staticmethod
    def _path(path: str, workdir: str | None) -> str:
        return posixpath.join(workdir, path) if workdir and not posixpath.isabs(path) else path

    def _job_files(
        self, workdir: str | None, stdout: int | str | None, stderr: int | str | None, capture: bool
    ) -> _JobFiles:
        prefix = self._path(f".sf-{uuid.uuid4().hex[:16]}", workdir)
        capture_file = None
        if isinstance(stdout, str):
            out = self._path(stdout, workdir)
        elif capture and stdout in (None, subprocess.PIPE):
            out = capture_file = f"{prefix}.out"
        else:
            out = "/dev/null"
        err: str | None
        if isinstance(stderr, str):
            err = self._path(stderr, workdir)
        elif stderr == subprocess.DEVNULL:
            err = "/dev/null"
        else:
            err = None  # merged with standard output
        return _JobFiles(
            script=f"{prefix}.sh", rc=f"{prefix}.rc", stdout=out, stderr=err, capture=capture_file
        )

    async def _prepare(
        self, inner: ExecutionLocation, workdir: str | None, files: _JobFiles, script: str
    ) -> None:
        directories = {posixpath.dirname(path) for path in (files.script, files.stdout, files.stderr or "")}
        directories = {path for path in directories if path and path != "/dev"}
        if directories:
            output, code = await self._probe(inner, ["mkdir", "-p", *sorted(directories)])
            if code != 0:
                raise RemoteCommandError(
                    f"cannot create {sorted(directories)} on {inner}: {output}", location=str(inner)
                )
        fd, local = tempfile.mkstemp(prefix="sf-batch-", suffix=".sh")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(script)
            await self.connector.copy_local_to_remote(local, files.script, [inner])
        finally:
            os.unlink(local)

    async def _discard(self, inner: ExecutionLocation, files: _JobFiles, pending: asyncio.Future[None]) -> None:
        """Wait for ``pending`` (the script's write) to end, then remove the job's files."""
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(pending, 60)
        leftovers = [files.script, files.rc] + ([files.capture] if files.capture else [])
        with contextlib.suppress(Exception):
            await self._probe(inner, ["rm", "-f", *leftovers])

    async def _submit_and_wait(
        self,
        inner: ExecutionLocation,
        files: _JobFiles,
        job_name: str,
        workdir: str | None,
        timeout: float | None,
        where: str,
    ) -> int:
        argv = self.submit_command(files.script, self.job_name(job_name), workdir, files.stdout, files.stderr)
        submission = asyncio.ensure_future(self._probe(inner, argv, workdir))
        try:
            output, code = await asyncio.shield(submission)
        except asyncio.CancelledError:
            # The submission goes on: cancel the job it creates, so that none is left behind.
            with contextlib.suppress(Exception):
                output, code = await submission
                if code == 0 and (orphan := self.parse_job_id(output)) is not None:
                    await self._cancel(orphan, inner)
            raise
        job_id = self.parse_job_id(output) if code == 0 else None
        if job_id is None:
            raise RemoteCommandError(
                f"{argv[0]} failed on {inner} (exit {code}): {output}", location=where, retryable=True
            )
        self._jobs[job_id] = inner
        _log.info("queue_job_submitted", deployment=self.deployment_name, job=job_name, job_id=job_id)
        try:
            async with asyncio.timeout(timeout):
                return await self._wait(inner, job_id, files.rc, where)
        except TimeoutError as exc:
            await asyncio.shield(self._cancel(job_id, inner))
            raise CommandTimeoutError(
                f"job {job_name!r} ({self.kind} job {job_id}) on {where} timed out after {timeout} s",
                location=where,
            ) from exc
        except BaseException:
            await asyncio.shield(self._cancel(job_id, inner))
            raise
        finally:
            self._jobs.pop(job_id, None)

    async def _wait(self, inner: ExecutionLocation, job_id: str, rc_file: str, where: str) -> int:
        errors = missing = 0
        while True:
            output, code = await self._probe(inner, self.status_command(job_id))
            try:
                status = self.parse_status(output, code)
                errors = 0
            except RemoteCommandError:
                errors += 1
                if errors >= _MAX_POLL_ERRORS:
                    raise
                status = JobStatus(state="UNKNOWN", done=False)
            if status is None or (status.done and status.exit_code is None):
                rc_output, rc_code = await self._probe(inner, ["cat", rc_file])
                if rc_code == 0 and rc_output.strip().lstrip("-").isdigit():
                    return int(rc_output.strip())
                missing += 1
                if missing >= _MAX_MISSING:
                    if status is None:
                        raise RemoteCommandError(
                            f"{self.kind} job {job_id} left the queue without an exit code", location=where
                        )
                    return 1
            elif status.done:
                assert status.exit_code is not None
                return status.exit_code
            await asyncio.sleep(self.polling_interval)

    async def _cancel(self, job_id: str, inner: ExecutionLocation) -> None:
        try:
            output, code = await self._probe(inner, self.cancel_command(job_id))
        except Exception as exc:  # best effort: the job may be gone, the login node unreachable
            _log.warning(
                "queue_cancel_failed", deployment=self.deployment_name, job_id=job_id, error=str(exc)
            )
            return
        if code != 0:
            _log.warning("queue_cancel_failed", deployment=self.deployment_name, job_id=job_id, error=output)
        else:
            _log.info("queue_job_cancelled", deployment=self.deployment_name, job_id=job_id)

    # --- copies and streams: the login node's ----------------------------------------------------

    def _inners(self, locations: Sequence[ExecutionLocation]) -> list[ExecutionLocation]:
        return list(dict.fromkeys(self._inner(location) for location in locations))

    async def copy_local_to_remote(
        self, src: str, dst: str, locations: Sequence[ExecutionLocation], read_only: bool = False
    ) -> None:
        """Copy ``src`` to ``dst`` on the login node (shared with the batch nodes)."""
        await self.connector.copy_local_to_remote(src, dst, self._inners(locations), read_only)

    async def copy_remote_to_local(
        self, src: str, dst: str, location: ExecutionLocation, read_only: bool = False
    ) -> None:
        """Copy ``src`` on the login node to ``dst`` on this machine."""
        await self.connector.copy_remote_to_local(src, dst, self._inner(location), read_only)

    async def copy_remote_to_remote(
        self,
        src: str,
        dst: str,
        locations: Sequence[ExecutionLocation],
        source_location: ExecutionLocation,
        source_connector: Connector | None = None,
        read_only: bool = False,
    ) -> None:
        """Copy to the login node; a source of this deployment is a path on the login node too."""
        if source_connector is None or source_connector is self:
            source_connector, source_location = self.connector, self._inner(source_location)
        await self.connector.copy_remote_to_remote(
            src, dst, self._inners(locations), source_location, source_connector, read_only
        )

    def get_stream_reader(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream the standard output of ``command`` run on the login node."""
        return self.connector.get_stream_reader(command, self._inner(location))

    def get_stream_writer(
        self, command: list[str], location: ExecutionLocation
    ) -> AbstractAsyncContextManager[StreamWrapper]:
        """Stream into the standard input of ``command`` run on the login node."""
        return self.connector.get_stream_writer(command, self._inner(location))
