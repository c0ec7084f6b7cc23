"""Running one CommandLineTool or ExpressionTool invocation.

:func:`execute_process` is the whole life of one job on one location, independent of the
workflow engine: evaluate resources, stage files, build the command line, run it through a
pluggable :data:`RunCommand`, and collect the outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog

from streamflow.connectors.procguard import kill_leftovers, precheck, reaper, wait_exit
from streamflow.cwl.commandline import build_command_line, join_shell
from streamflow.cwl.container import (
    ImageUnavailable,
    container_command,
    ensure_image,
    image_of,
    kill_command,
    warn_host_fallback,
)
from streamflow.cwl.container import engine as container_engine
from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.cwl.hostpaths import HostPaths
from streamflow.cwl.outputs import collect_outputs, finalize_files
from streamflow.cwl.staging import colocate_inputs, materialize_literals, stage_initial_workdir, walk_files
from streamflow.cwl.types import SchemaIndex, TypeMismatch, check_value
from streamflow.cwl.utils import Requirements, plain, requirement_class, shortname
from streamflow.errors import JobFailedError, UnsupportedRequirementError

__all__ = [
    "SUPPORTED_REQUIREMENTS",
    "PreparedJob",
    "RunCommand",
    "check_requirements_supported",
    "evaluate_resources",
    "execute_process",
    "finish_job",
    "local_run",
    "prepare_job",
    "resolve_requirements",
]

log = structlog.get_logger("streamflow.cwl.tool")

RunCommand = Callable[..., Awaitable[int]]
"""``async run(command, *, environment, workdir, stdin, stdout, stderr, timeout) -> exit code``.

``command`` is an argument list; ``stdin``/``stdout``/``stderr`` are file paths or None;
``timeout`` is in seconds or None. Implementations raise :class:`JobFailedError` (not
retryable) when the time limit is exceeded.
"""

#: Where a command's standard output and error go when the tool does not redirect them
#: (None: this process's standard error). The runner daemon points it at the client
#: whose run the job belongs to.
tool_output: ContextVar[Callable[[bytes], None] | None] = ContextVar("tool_output", default=None)

SUPPORTED_REQUIREMENTS = frozenset(
    {
        "InlineJavascriptRequirement",
        "SchemaDefRequirement",
        "DockerRequirement",
        "SoftwareRequirement",
        "InitialWorkDirRequirement",
        "EnvVarRequirement",
        "ShellCommandRequirement",
        "ResourceRequirement",
        "LoadListingRequirement",
        "WorkReuse",
        "NetworkAccess",
        "InplaceUpdateRequirement",
        "ToolTimeLimit",
        "SubworkflowFeatureRequirement",
        "ScatterFeatureRequirement",
        "MultipleInputFeatureRequirement",
        "StepInputExpressionRequirement",
    }
)
"""Requirement classes this runner implements (others as *requirements* are unsupported)."""


async def local_run(
    command: list[str],
    *,
    environment: dict[str, str],
    workdir: str,
    stdin: str | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    timeout: float | None = None,
) -> int:
    """Run a command on the local host with asyncio (no shell unless the command is one).

    The command runs in its own process group, watched by the reaper of
    :mod:`streamflow.connectors.procguard` (it dies with this process), with umask 077; when
    it ends, on timeout or on cancellation the whole group is killed.

    Args:
        command: the argument list.
        environment: the complete environment of the command.
        workdir: the working directory.
        stdin: file to read standard input from (otherwise ``/dev/null``).
        stdout: file to write standard output to (otherwise our standard error, or
            :data:`tool_output`).
        stderr: file to write standard error to (otherwise our standard error, or
            :data:`tool_output`).
        timeout: seconds before the command is killed, or None.

    Returns:
        The exit code (negative signal number if killed by a signal).

    Raises:
        JobFailedError: the time limit was exceeded (not retryable), or the command could not
            be started (exit code 127/126).
    """
    sink = tool_output.get()
    default: Any = asyncio.subprocess.PIPE if sink is not None else sys.stderr.fileno()
    problem = precheck(command, environment, workdir)
    if problem == 127:
        raise JobFailedError(f"command not found: {command[0]}", exit_code=127)
    if problem == 126:
        raise JobFailedError(f"command not executable: {command[0]}", exit_code=126)
    reaper().start()  # so that the job is registered right after it starts
    with contextlib.ExitStack() as stack:
        stdin_f = stack.enter_context(open(stdin, "rb")) if stdin else asyncio.subprocess.DEVNULL
        stdout_f = stack.enter_context(open(stdout, "wb")) if stdout else default
        stderr_f = stack.enter_context(open(stderr, "wb")) if stderr else default
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                cwd=workdir,
                env=environment,
                stdin=stdin_f,
                stdout=stdout_f,
                stderr=stderr_f,
                start_new_session=True,
                umask=0o077,  # the job's files are private to this user
            )
        except FileNotFoundError as exc:
            raise JobFailedError(f"command not found: {command[0]}", exit_code=127) from exc
        except PermissionError as exc:
            raise JobFailedError(f"command not executable: {command[0]}", exit_code=126) from exc
        reaper().watch(proc.pid)  # its group dies with this process (streamflow/connectors/procguard.py)
        pumps = [asyncio.create_task(_pump(pipe, sink)) for pipe in (proc.stdout, proc.stderr)
                 if pipe is not None and sink is not None]
        try:
            async with asyncio.timeout(timeout):
                code = await wait_exit(proc)
            kill_leftovers(proc.pid)  # what it left in the background must not outlive the job
            await proc.wait()
            if pumps:  # the rest of the output; a child left in the background may hold the pipe
                await asyncio.wait(pumps, timeout=2)
            return code
        except TimeoutError:
            _kill_group(proc)
            await proc.wait()
            raise JobFailedError(
                f"command exceeded its time limit of {timeout:g} seconds and was killed", retryable=False
            ) from None
        except BaseException:
            _kill_group(proc)
            with contextlib.suppress(BaseException):
                await asyncio.shield(proc.wait())
            raise
        finally:
            reaper().forget(proc.pid)
            for pump in pumps:
                pump.cancel()


async def _pump(pipe: asyncio.StreamReader, sink: Callable[[bytes], None]) -> None:
    while chunk := await pipe.read(65536):
        sink(chunk)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        proc.kill()


def resolve_requirements(
    process: Any, inherited_requirements: list[Any], inherited_hints: list[Any]
) -> tuple[list[Any], list[Any]]:
    """Merge inherited requirements and hints with a process's own.

    The process's own entries override inherited ones of the same class; requirements are
    always consulted before hints (see :class:`streamflow.cwl.utils.Requirements`).

    Args:
        process: the cwl_utils process (or its plain view).
        inherited_requirements: effective requirements of the enclosing step/workflow.
        inherited_hints: effective hints of the enclosing step/workflow.

    Returns:
        ``(requirements, hints)`` as lists of plain dicts.
    """
    view = plain(process)

    def merge(outer: list[Any], own: Any) -> list[Any]:
        merged: dict[str, Any] = {}
        for entry in [*(plain(e) for e in outer), *(plain(e) for e in own or [])]:
            if isinstance(entry, Mapping):
                merged[requirement_class(entry)] = entry
        return list(merged.values())

    requirements = merge(inherited_requirements, view.get("requirements"))
    hints = merge(inherited_hints, view.get("hints"))
    return requirements, hints


def check_requirements_supported(process: Any, requirements: list[Any]) -> None:
    """Raise if a *requirement* (not a hint) is not implemented by this runner.

    Args:
        process: the cwl_utils process (used in the message).
        requirements: the effective requirements.

    Raises:
        UnsupportedRequirementError: an unknown requirement class, or a DockerRequirement
            feature that cannot be honoured without a container.
    """
    name = str(getattr(process, "id", None) or plain(process).get("id", "process"))
    for entry in requirements:
        cls = requirement_class(entry)
        if cls not in SUPPORTED_REQUIREMENTS:
            raise UnsupportedRequirementError(f"{name}: unsupported requirement {cls!r}")
        if cls == "DockerRequirement":
            out_dir = plain(entry).get("dockerOutputDirectory")
            if out_dir and not os.path.isabs(str(out_dir)):
                raise UnsupportedRequirementError(
                    f"{name}: DockerRequirement.dockerOutputDirectory {out_dir!r} must be an absolute path"
                )


def evaluate_resources(
    process: Any,
    inputs: Mapping[str, Any],
    *,
    requirements: list[Any],
    hints: list[Any],
    cwl_version: str = "v1.2",
    cores: float = 1,
    ram: float = 1024,
) -> dict[str, float]:
    """Evaluate a process's ``ResourceRequirement`` (requirement or hint) for the scheduler.

    The minimum of each range is used (or the maximum when only it is given); without a
    ResourceRequirement the given defaults apply. Values are rounded up to integers, as the
    ``runtime`` object of the job will show them.

    Args:
        process: the cwl_utils process (unused today; kept for symmetry with the other calls).
        inputs: the validated input object (for expressions).
        requirements: effective requirements.
        hints: effective hints.
        cwl_version: the document's original ``cwlVersion``.
        cores: cores when not constrained.
        ram: RAM in MiB when not constrained.

    Returns:
        ``{"cores", "ram", "outdirSize", "tmpdirSize"}`` (sizes in MiB).

    Raises:
        JobFailedError: an expression failed or returned something other than a number.
    """
    del process
    reqs = Requirements(requirements, hints)
    return _resources(reqs, inputs, ExpressionEvaluator(reqs.as_list(), cwl_version), cores=cores, ram=ram)


def _resources(
    requirements: Requirements,
    inputs: Mapping[str, Any],
    evaluator: ExpressionEvaluator,
    *,
    cores: float = 1,
    ram: float = 1024,
    outdir_size: float = 1024,
    tmpdir_size: float = 1024,
) -> dict[str, float]:
    """Evaluate ``ResourceRequirement`` into ``runtime`` values (see :func:`evaluate_resources`)."""
    req = requirements.get("ResourceRequirement") or {}
    result: dict[str, float] = {}
    for key, default in (("cores", cores), ("ram", ram), ("outdir", outdir_size), ("tmpdir", tmpdir_size)):
        low = req.get(f"{key}Min")
        high = req.get(f"{key}Max")
        if has_expression(low):
            low = evaluator.evaluate(low, inputs)
        if has_expression(high):
            high = evaluator.evaluate(high, inputs)
        value: Any = low if low is not None else high if high is not None else default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise JobFailedError(f"ResourceRequirement {key}: expected a number, got {value!r}")
        if low is not None and high is not None and high < low:
            raise JobFailedError(f"ResourceRequirement {key}Max ({high}) is less than {key}Min ({low})")
        number = math.ceil(value)
        result[{"outdir": "outdirSize", "tmpdir": "tmpdirSize"}.get(key, key)] = number
    return result


def _environment(
    requirements: Requirements,
    inputs: Mapping[str, Any],
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
) -> dict[str, str]:
    env = {
        "HOME": str(runtime["outdir"]),
        "TMPDIR": str(runtime["tmpdir"]),
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    }
    req = requirements.get("EnvVarRequirement")
    if req is not None:
        definitions = req.get("envDef") or []
        if isinstance(definitions, Mapping):
            definitions = [{"envName": k, "envValue": v} for k, v in definitions.items()]
        for entry in definitions:
            value = evaluator.evaluate(entry.get("envValue"), inputs, runtime=runtime)
            env[str(entry.get("envName"))] = value if isinstance(value, str) else str(value)
    return env


def _stream(
    view: Mapping[str, Any],
    key: str,
    inputs: Mapping[str, Any],
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
) -> str | None:
    value = view.get(key)
    if value is None:
        if key == "stdin":
            for param in view.get("inputs") or []:
                if param.get("type") == "stdin":
                    found = inputs.get(shortname(str(param["id"])))
                    return str(found["path"]) if isinstance(found, Mapping) and found.get("path") else None
            return None
        if any(o.get("type") == key for o in view.get("outputs") or []):
            return f"{key}-{uuid.uuid4().hex}"
        return None
    value = evaluator.evaluate(value, inputs, runtime=runtime)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise JobFailedError(f"{key} must evaluate to a file name, got {value!r}")
    if key != "stdin" and (os.path.isabs(value) or ".." in value.split("/")):
        raise JobFailedError(f"{key} {value!r} must be a relative path inside the output directory")
    return value


def _exit_status(view: Mapping[str, Any], code: int, command: list[str]) -> None:
    success = view.get("successCodes")
    success_codes = set(success) if success is not None else {0}
    if code in success_codes:
        return
    temporary = set(view.get("temporaryFailCodes") or [])
    permanent = set(view.get("permanentFailCodes") or [])
    shown = " ".join(command)
    shown = shown if len(shown) <= 200 else shown[:197] + "..."
    if code in temporary and code not in permanent:
        raise JobFailedError(
            f"command exited with temporary failure code {code}: {shown}", exit_code=code, retryable=True
        )
    # An ordinary failure code may succeed on retry (a flaky node, a transient error):
    # the failure manager decides; only permanentFailCodes are never retried.
    raise JobFailedError(f"command exited with code {code}: {shown}", exit_code=code,
                         retryable=code not in permanent)


@dataclass
class PreparedJob:
    """A CommandLineTool invocation ready to run: the result of :func:`prepare_job`.

    Attributes:
        command: the argument list (``["/bin/sh", "-c", line]`` with ShellCommandRequirement).
        environment: the complete environment of the command.
        workdir: the working directory (the output directory).
        stdin: file for standard input, or None.
        stdout: file for standard output (inside ``workdir``), or None.
        stderr: file for standard error (inside ``workdir``), or None.
        timeout: time limit in seconds (ToolTimeLimit), or None.
        runtime: the ``runtime`` object (outdir, tmpdir, cores, ram, outdirSize, tmpdirSize).
        inputs: the staged input object.
        outputs: for an ExpressionTool, the final output object (nothing to run).
    """

    command: list[str]
    environment: dict[str, str]
    workdir: str
    stdin: str | None
    stdout: str | None
    stderr: str | None
    timeout: float | None
    runtime: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any] | None = None
    _view: Mapping[str, Any] = field(default_factory=dict, repr=False)
    _evaluator: ExpressionEvaluator | None = field(default=None, repr=False)
    _index: SchemaIndex | None = field(default=None, repr=False)
    _streams: dict[str, str] = field(default_factory=dict, repr=False)
    _allowed: set[str] = field(default_factory=set, repr=False)
    _host: HostPaths | None = field(default=None, repr=False)
    _docker: Mapping[str, Any] | None = field(default=None, repr=False)
    _network: bool = field(default=False, repr=False)


def prepare_job(
    process: Any,
    job_order: dict[str, Any],
    *,
    requirements: list[Any],
    hints: list[Any],
    outdir: str,
    tmpdir: str,
    cores: float = 1,
    ram: float = 1024,
    cwl_version: str = "v1.2",
) -> PreparedJob:
    """Stage a job and build its command (the synchronous first half of :func:`execute_process`).

    For an ExpressionTool the expression is evaluated here and ``outputs`` is set.
    Arguments are those of :func:`execute_process`.

    Returns:
        The prepared job.

    Raises:
        JobFailedError: an expression failed or staging is impossible.
        UnsupportedRequirementError: an Operation, or a requirement that cannot be honoured.
    """
    view, reqs, evaluator, index = _tool_context(process, requirements, hints, cwl_version)
    cls = view.get("class")
    outdir = os.path.abspath(outdir)
    tmpdir = os.path.abspath(tmpdir)
    _ensure_dir(outdir)
    _ensure_dir(tmpdir)
    inputs = _copy(job_order)
    resources = _resources(reqs, inputs, evaluator, cores=cores, ram=ram)
    runtime: dict[str, Any] = {"outdir": outdir, "tmpdir": tmpdir, **resources}
    if cls == "ExpressionTool":
        outputs = _run_expression_tool(view, inputs, evaluator, runtime, index, outdir)
        return PreparedJob([], {}, outdir, None, None, None, None, runtime, inputs, outputs)
    if cls != "CommandLineTool":
        raise UnsupportedRequirementError(f"cannot execute a process of class {cls!r} here")
    docker = reqs.get("DockerRequirement")
    host = HostPaths(outdir, (docker or {}).get("dockerOutputDirectory"),
                     in_container="DockerRequirement" in reqs.requirements)
    try:
        host.link_output_directory()
        runtime["outdir"] = host.runtime_outdir
        stage_dir = os.path.join(tmpdir, ".stage")
        materialize_literals(inputs, stage_dir)
        colocate_inputs(inputs, stage_dir)
        staged = stage_initial_workdir(
            reqs, inputs, outdir=outdir, evaluator=evaluator, runtime=runtime, cwl_version=cwl_version,
            host=host,
        )
        parts = build_command_line(view, inputs, evaluator=evaluator, runtime=runtime, index=index)
    except BaseException:
        host.cleanup()
        raise
    if not parts:
        host.cleanup()
        raise JobFailedError("the command line is empty (no baseCommand and no arguments)")
    if reqs.get("ShellCommandRequirement") is not None:
        command = ["/bin/sh", "-c", join_shell(parts)]
    else:
        command = [p.text for p in parts]
        if docker is not None:
            command = _image_entrypoint(docker, command)
    streams = {key: _stream(view, key, inputs, evaluator, runtime) for key in ("stdin", "stdout", "stderr")}
    paths = {key: os.path.join(outdir, name) if name is not None else None for key, name in streams.items()}
    for key in ("stdout", "stderr"):
        target = paths[key]
        if target is not None:
            _ensure_dir(os.path.dirname(target))
    return PreparedJob(
        command=command,
        environment=_environment(reqs, inputs, evaluator, runtime),
        workdir=outdir,
        stdin=streams["stdin"],
        stdout=paths["stdout"],
        stderr=paths["stderr"],
        timeout=_time_limit(reqs, inputs, evaluator, runtime),
        runtime=runtime,
        inputs=inputs,
        _view=view,
        _evaluator=evaluator,
        _index=index,
        _streams={k: v for k, v in streams.items() if v is not None and k != "stdin"},
        _allowed=_input_paths(inputs) | {os.path.realpath(p) for p in staged},
        _host=host,
        _docker=docker,
        _network=_network_access(reqs, inputs, evaluator, runtime),
    )


_ToolContext = tuple[Mapping[str, Any], Requirements, ExpressionEvaluator, SchemaIndex]
#: What is the same for every job of a tool: id(process), id(requirements), id(hints), version ->
#: (process, requirements, hints, context); the objects are kept, so that their ids stay theirs.
_contexts: dict[tuple[int, int, int, str], tuple[Any, Any, Any, _ToolContext]] = {}
_CONTEXTS = 256


def _tool_context(process: Any, requirements: list[Any], hints: list[Any], cwl_version: str) -> _ToolContext:
    """The plain view, requirements, expression evaluator and named types of a tool, worked out
    (and its requirements checked) once per tool rather than once per job: a scatter's jobs
    share them. Nothing in them depends on a job; callers only read them."""
    key = (id(process), id(requirements), id(hints), cwl_version)
    hit = _contexts.get(key)
    if hit is not None and hit[0] is process and hit[1] is requirements and hit[2] is hints:
        return hit[3]
    view = plain(process)
    reqs = Requirements(requirements, hints)
    check_requirements_supported(process, list(reqs.requirements.values()))
    evaluator = ExpressionEvaluator(reqs.as_list(), cwl_version)
    index = SchemaIndex(reqs, [*(view.get("inputs") or []), *(view.get("outputs") or [])])
    context = (view, reqs, evaluator, index)
    if len(_contexts) >= _CONTEXTS:
        _contexts.clear()
    _contexts[key] = (process, requirements, hints, context)
    return context


def _ensure_dir(path: str) -> None:
    """Create directory ``path`` with its parents unless it is one already (one ``stat`` then)."""
    if not os.path.isdir(path):
        os.makedirs(path, exist_ok=True)


def _network_access(reqs: Requirements, inputs: Mapping[str, Any], evaluator: ExpressionEvaluator,
                    runtime: Mapping[str, Any]) -> bool:
    req = reqs.get("NetworkAccess")
    if req is None:
        return False
    value = req.get("networkAccess")
    if has_expression(value):
        value = evaluator.evaluate(value, inputs, runtime=runtime)
    return value is True


def finish_job(job: PreparedJob, exit_code: int) -> dict[str, Any]:
    """Check the exit code and collect the outputs (the second half of :func:`execute_process`).

    Args:
        job: the prepared job.
        exit_code: the command's exit code.

    Returns:
        The output object.

    Raises:
        JobFailedError: a failure exit code (``retryable`` for ``temporaryFailCodes``), or
            missing/malformed outputs.
    """
    if job.outputs is not None:
        return job.outputs
    assert job._evaluator is not None and job._index is not None
    _exit_status(job._view, exit_code, job.command)
    return collect_outputs(
        job._view,
        job.inputs,
        outdir=job.workdir,
        evaluator=job._evaluator,
        runtime={**job.runtime, "exitCode": exit_code},
        index=job._index,
        streams=job._streams,
        allowed_paths=job._allowed,
    )


async def execute_process(
    process: Any,
    job_order: dict[str, Any],
    *,
    requirements: list[Any],
    hints: list[Any],
    outdir: str,
    tmpdir: str,
    cores: float = 1,
    ram: float = 1024,
    run: RunCommand = local_run,
    cwl_version: str = "v1.2",
    container: str | None = None,
) -> dict[str, Any]:
    """Run a CommandLineTool or ExpressionTool once and return its output object.

    Staging, command building and output collection run synchronously in the calling
    thread (expressions reuse that thread's Node.js process); only the command itself is
    awaited, through ``run``.

    Args:
        process: the cwl_utils process.
        job_order: the input object, already checked by
            :func:`streamflow.cwl.inputs.fill_and_validate_inputs` (not modified).
        requirements: effective requirements (see :func:`resolve_requirements`).
        hints: effective hints.
        outdir: the designated output directory (created if missing; the working directory).
        tmpdir: the designated temporary directory (created if missing).
        cores: cores allocated when ResourceRequirement does not say.
        ram: RAM (MiB) allocated when ResourceRequirement does not say.
        run: how to run the command (default: :func:`local_run`).
        cwl_version: the document's original ``cwlVersion``.
        container: how a DockerRequirement runs (``auto``, ``docker``, ``podman``,
            ``none``; None: ``STREAMFLOW_CONTAINER_ENGINE``), see :mod:`streamflow.cwl.container`.

    Returns:
        The output object; every File has ``location``, ``path``, ``basename``, ``nameroot``,
        ``nameext``, ``size`` and ``checksum``.

    Raises:
        JobFailedError: the command failed (``retryable`` when the exit code is in
            ``temporaryFailCodes``), or its outputs are missing or malformed.
        UnsupportedRequirementError: an Operation, or a requirement that cannot be honoured.
    """
    job = prepare_job(
        process,
        job_order,
        requirements=requirements,
        hints=hints,
        outdir=outdir,
        tmpdir=tmpdir,
        cores=cores,
        ram=ram,
        cwl_version=cwl_version,
    )
    if job.outputs is not None:
        return job.outputs
    command, environment, running = job.command, job.environment, None
    try:
        if job._docker is not None:
            engine_path = await asyncio.to_thread(container_engine, container)
            if engine_path is None:
                warn_host_fallback(str(job._view.get("id") or ""))
            else:
                image = image_of(job._docker)
                try:
                    await asyncio.to_thread(ensure_image, engine_path, image)
                except ImageUnavailable as exc:
                    if job._host is not None and job._host.in_container:
                        raise JobFailedError(f"DockerRequirement: {exc}") from None
                    # Only a hint: the tool may run on the host (as with --no-container).
                    log.warning("container_hint_ignored", tool=str(job._view.get("id") or ""), detail=str(exc))
                    engine_path = None
            if engine_path is not None:
                command, name = container_command(
                    engine_path, image_of(job._docker), job.command, outdir=job.workdir,
                    tmpdir=str(job.runtime["tmpdir"]), environment=job.environment, inputs=job._allowed,
                    container_outdir=job._docker.get("dockerOutputDirectory"), network=job._network,
                    stdin=job.stdin is not None)
                environment, running = dict(os.environ), (engine_path, name)  # the engine's client's
        code = await run(
            command,
            environment=environment,
            workdir=job.workdir,
            stdin=job.stdin,
            stdout=job.stdout,
            stderr=job.stderr,
            timeout=job.timeout,
        )
        running = None  # it ended (and --rm removed it)
        return finish_job(job, code)
    finally:
        if running is not None:  # a time limit or a cancellation: the client is gone, not the container
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                await asyncio.to_thread(subprocess.run, kill_command(*running), capture_output=True,
                                        timeout=30, check=False)
        if job._host is not None:
            job._host.cleanup()


def _input_paths(inputs: Mapping[str, Any]) -> set[str]:
    found: set[str] = set()

    def visit(value: dict[str, Any]) -> None:
        path = value.get("path")
        if isinstance(path, str):
            found.add(os.path.realpath(path))

    walk_files(dict(inputs), visit)
    return found


def _time_limit(
    reqs: Requirements, inputs: Mapping[str, Any], evaluator: ExpressionEvaluator, runtime: Mapping[str, Any]
) -> float | None:
    req = reqs.get("ToolTimeLimit")
    if req is None:
        return None
    limit = evaluator.evaluate(req.get("timelimit"), inputs, runtime=runtime)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise JobFailedError(f"ToolTimeLimit.timelimit must be a non-negative number, got {limit!r}")
    return float(limit) if limit > 0 else None


def _run_expression_tool(
    view: Mapping[str, Any],
    inputs: dict[str, Any],
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
    index: SchemaIndex,
    outdir: str,
) -> dict[str, Any]:
    value = evaluator.evaluate(view.get("expression"), inputs, runtime=runtime)
    if not isinstance(value, dict):
        raise JobFailedError(f"ExpressionTool expression must return an object, got {type(value).__name__}")
    materialize_literals(value, outdir, flat=True)
    finalize_files(value, base_dir=outdir, default_listing="no_listing")
    result: dict[str, Any] = {}
    for param in view.get("outputs") or []:
        name = shortname(str(param["id"]))
        try:
            checked, _ = check_value(value.get(name), param.get("type"), name, index, param, null_any=True)
        except TypeMismatch as exc:
            raise JobFailedError(f"output '{exc.where}': {exc.reason}") from None
        result[name] = checked
    return result


def _image_entrypoint(docker: Mapping[str, Any], command: list[str]) -> list[str]:
    """Emulate the entry point of an official image when the command starts with an option.

    The official images of a program (``bash``, ``python``, ``node``...) start it when the
    container's command begins with ``-`` (their ``docker-entrypoint.sh`` runs
    ``set -- <program> "$@"``), so ``baseCommand: [-c, ...]`` on ``docker.io/bash`` runs
    ``bash -c ...``. Without a container the image cannot be inspected: the program is the
    image's name, used only when it is an executable on this host's ``PATH``.
    """
    if not command or not command[0].startswith("-"):
        return command
    image = str(docker.get("dockerPull") or docker.get("dockerImageId") or "")
    program = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    if program and shutil.which(program):
        return [program, *command]
    return command


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
