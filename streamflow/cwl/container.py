"""Running a ``DockerRequirement`` tool in a container, when a container engine answers.

``STREAMFLOW_CONTAINER_ENGINE`` chooses: ``auto`` (default: ``docker``, else ``podman``,
whichever is on ``PATH`` and answers ``info``), ``docker``, ``podman`` (that one, if it
answers) or ``none`` (always on the host; ``--no-container`` on the command line). Without
an engine the tool runs on the host, with the container paths emulated
(:mod:`streamflow.cwl.hostpaths`), and a warning is logged once per process.

With an engine, a ``DockerRequirement`` given as a requirement *or as a hint* runs in a
container (as cwltool does). The image is made present first (:func:`ensure_image`): when
it cannot be pulled, a requirement fails the job with a message naming the image and the
engine, and a hint falls back to the host with a warning. A failed pull is remembered for a
minute (the next jobs asking for that image get the same answer without asking the engine),
and the jobs of a scatter wait for one pull of their image instead of each pulling it.

In a container, paths keep their host names: the job's output and temporary directories
are mounted read-write at their own paths (and the output directory also at
``dockerOutputDirectory``), every input file or directory read-only at its own path, so
the command line built for the host is valid as it is, and symbolic links staged in the
output directory resolve. The container runs as the calling user, without network unless
``NetworkAccess`` allows it, under a name of its own so that a time limit or a
cancellation stops it (stopping the engine's client would not).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from streamflow.errors import UnsupportedRequirementError

__all__ = ["ImageUnavailable", "container_command", "engine", "ensure_image", "image_of", "kill_command",
           "warn_host_fallback"]

log = structlog.get_logger("streamflow.cwl.container")

_lock = threading.Lock()
_engine: dict[str, str | None] | None = None  # cached answers, by choice
_warned = False


def engine(choice: str | None = None) -> str | None:
    """The container engine to use (its path), or None: run on the host.

    Args:
        choice: ``auto``, ``docker``, ``podman`` or ``none`` (a step's ``streamflow.yml``
            setting); None: ``STREAMFLOW_CONTAINER_ENGINE`` (default ``auto``).
    """
    global _engine
    key = (choice or os.environ.get("STREAMFLOW_CONTAINER_ENGINE", "auto")).strip().lower()
    with _lock:
        if _engine is None:
            _engine = {}
        if key not in _engine:
            _engine[key] = _find_engine(key)
        return _engine[key]


def _find_engine(choice: str) -> str | None:
    if choice in ("none", "host", "off"):
        return None
    candidates = ["docker", "podman"] if choice in ("", "auto") else [choice]
    for name in candidates:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            answer = subprocess.run([path, "info", "--format", "{{json .}}"], capture_output=True, timeout=10,
                                    check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if answer.returncode == 0:
            return path
    return None


def warn_host_fallback(tool: str) -> None:
    """Log, once per process, that DockerRequirement tools run on the host."""
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    log.warning("no_container_engine", tool=tool,
                detail="no container engine answers (STREAMFLOW_CONTAINER_ENGINE=auto looks for docker, then "
                       "podman): tools with a DockerRequirement run on the host")


class ImageUnavailable(Exception):
    """The engine could not pull an image; the message names the image, the engine and why."""


_PULL_TIMEOUT = 1800.0  # seconds: a large image over a slow link
_FAILURE_TTL = 60.0  # seconds a failed pull is remembered before an engine is asked again
_present: set[tuple[str, str]] = set()  # (engine path, image) known to be present
_failed: dict[tuple[str, str], tuple[float, str]] = {}  # (engine path, image) -> (when, why)
_image_locks: dict[tuple[str, str], threading.Lock] = {}


def ensure_image(engine_path: str, image: str) -> None:
    """Make sure ``image`` is present for the engine, pulling it if needed.

    One image is looked up and pulled by one job at a time (the jobs of a scatter wait for
    the first one's pull instead of each pulling it), and a pull that failed is not tried
    again for :data:`_FAILURE_TTL` seconds: the jobs asking meanwhile get the same error
    without running the engine twice more each (an ``image inspect`` and a ``pull`` cost
    ~0.1 s of CPU and ~0.2 s with Podman, where the registry cannot be reached).

    Raises:
        ImageUnavailable: it is not present and the pull failed (or timed out), now or
            less than :data:`_FAILURE_TTL` seconds ago.
    """
    key = (engine_path, image)
    with _lock:
        if key in _present:
            return
        image_lock = _image_locks.setdefault(key, threading.Lock())
    with image_lock:
        with _lock:
            if key in _present:
                return
            failure = _failed.get(key)
            if failure is not None and time.monotonic() - failure[0] < _FAILURE_TTL:
                raise ImageUnavailable(failure[1])
        try:
            _inspect_or_pull(engine_path, image)
        except ImageUnavailable as exc:
            with _lock:
                _failed[key] = (time.monotonic(), str(exc))
            raise
        with _lock:
            _present.add(key)
            _failed.pop(key, None)


def _inspect_or_pull(engine_path: str, image: str) -> None:
    name = os.path.basename(engine_path)
    try:
        inspect = subprocess.run([engine_path, "image", "inspect", image], capture_output=True, timeout=60,
                                 check=False)
        if inspect.returncode != 0:
            pulled = subprocess.run([engine_path, "pull", image], capture_output=True, timeout=_PULL_TIMEOUT,
                                    check=False)
            if pulled.returncode != 0:
                reason = _last_lines(pulled.stderr or pulled.stdout) or f"exit code {pulled.returncode}"
                raise ImageUnavailable(f"cannot pull image {image!r} with {name} ({engine_path}): {reason}")
    except subprocess.TimeoutExpired:
        raise ImageUnavailable(f"cannot pull image {image!r} with {name} ({engine_path}): "
                               "timed out") from None
    except OSError as exc:
        raise ImageUnavailable(f"cannot pull image {image!r} with {name} ({engine_path}): {exc}") from None


def _last_lines(output: bytes, count: int = 3) -> str:
    lines = [line.strip() for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-count:])[:600]


def image_of(docker: Mapping[str, Any]) -> str:
    """The image a ``DockerRequirement`` names.

    Raises:
        UnsupportedRequirementError: an image to build, load or import (not supported).
    """
    for key in ("dockerPull", "dockerImageId"):
        value = docker.get(key)
        if isinstance(value, str) and value:
            return value
    given = sorted(k for k in ("dockerLoad", "dockerFile", "dockerImport") if docker.get(k))
    raise UnsupportedRequirementError(
        f"DockerRequirement: {', '.join(given) or 'no image'}: only dockerPull and dockerImageId are supported")


def container_command(
    engine_path: str,
    image: str,
    command: list[str],
    *,
    outdir: str,
    tmpdir: str,
    environment: Mapping[str, str],
    inputs: Iterable[str] = (),
    container_outdir: str | None = None,
    network: bool = False,
    stdin: bool = False,
    name: str | None = None,
) -> tuple[list[str], str]:
    """The engine's command line running ``command`` in ``image``, and the container's name."""
    name = name or f"streamflow-{secrets.token_hex(6)}"
    argv = [engine_path, "run", "--rm", "--name", name, "--workdir", container_outdir or outdir,
            "--user", f"{os.getuid()}:{os.getgid()}", "--network", "bridge" if network else "none",
            "--log-driver", "none"]
    if stdin:
        argv.append("--interactive")
    for key, value in sorted(environment.items()):
        argv += ["--env", f"{key}={value}"]
    argv += ["--volume", f"{outdir}:{outdir}:rw", "--volume", f"{tmpdir}:{tmpdir}:rw"]
    if container_outdir and container_outdir != outdir:
        argv += ["--volume", f"{outdir}:{container_outdir}:rw"]
    for path in _outermost(p for p in inputs if not _inside(p, (outdir, tmpdir))):
        argv += ["--volume", f"{path}:{path}:ro"]
    argv += [image, *command]
    return argv, name


def kill_command(engine_path: str, name: str) -> list[str]:
    """The command line that stops a container at once."""
    return [engine_path, "kill", name]


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _outermost(paths: Iterable[str]) -> list[str]:
    """Sorted paths without those inside another one of them (one mount covers both)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):  # parents before their children
        if not _inside(path, kept):
            kept.append(path)
    return sorted(kept)
