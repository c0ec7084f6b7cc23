"""Container paths of a ``DockerRequirement``, emulated on the host.

There is no container engine here: a tool with a ``DockerRequirement`` runs on the host.
Two features name absolute paths *inside* the container, which a host run honours as
follows (decided in ``docs/conformance.md``):

* ``dockerOutputDirectory: /out`` - the tool expects its output directory at ``/out``.
  For the job's duration ``/out`` is a symbolic link to the job's real output directory
  (``runtime.outdir`` is ``/out``, as in a container). Outputs are collected from, and stay
  in, the real directory; the link is removed when the job ends.
* an absolute ``entryname`` in ``InitialWorkDirRequirement`` - under the output directory
  it maps into the real one; elsewhere the entry is staged at that very host path.

Both only ever *create* paths: when such a path already exists (a real host file, or a
leftover) the job is refused as unsupported rather than touching it; the missing ancestors
that had to be created are removed with it when the job ends. Jobs that need the same
container path take turns through a host-wide lock (``LOCK_DIR``); a second job of the
same event loop is refused at once (it cannot wait without blocking the first).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
import time

from streamflow.errors import JobFailedError, UnsupportedRequirementError

__all__ = ["HostPaths"]

LOCK_DIR = "/tmp/streamflow-hostpaths"
"""Where the host-wide locks of claimed container paths live (one file per path)."""

LOCK_WAIT = 10.0
"""Seconds a job waits for another process's job to release a container path."""

_local = threading.local()  # .held: paths claimed by jobs of this thread's event loop


def _held() -> set[str]:
    held: set[str] | None = getattr(_local, "held", None)
    if held is None:
        held = _local.held = set()
    return held


class HostPaths:
    """The container paths one job created on the host, and how to map entry names.

    Args:
        outdir: the job's real output directory.
        container_outdir: the ``dockerOutputDirectory``, if any.
        in_container: whether the tool has a ``DockerRequirement`` under ``requirements``
            (absolute entry names are only valid inside a container).
    """

    def __init__(self, outdir: str, container_outdir: str | None = None, *, in_container: bool = False) -> None:
        self.outdir = os.path.normpath(outdir)
        self.container_outdir = os.path.normpath(container_outdir) if container_outdir else None
        if self.container_outdir == self.outdir:
            self.container_outdir = None
        self.in_container = in_container
        self.created: list[str] = []
        self._locks: list[tuple[str, int]] = []

    @property
    def runtime_outdir(self) -> str:
        """The output directory as the tool sees it (``runtime.outdir``)."""
        return self.container_outdir or self.outdir

    def link_output_directory(self) -> None:
        """Make ``dockerOutputDirectory`` point at the real output directory.

        Raises:
            UnsupportedRequirementError: the path is relative or already exists.
        """
        if self.container_outdir is None:
            return
        if not os.path.isabs(self.container_outdir):
            raise UnsupportedRequirementError(
                f"DockerRequirement.dockerOutputDirectory {self.container_outdir!r} must be an absolute path")
        self._claim(self.container_outdir, "DockerRequirement.dockerOutputDirectory")
        os.symlink(self.outdir, self.container_outdir, target_is_directory=True)

    def target(self, name: str) -> str | None:
        """The host path of an absolute entry name, or None for a relative one.

        Raises:
            JobFailedError: an absolute name without a container (an invalid tool).
            UnsupportedRequirementError: a host path that already exists.
        """
        if not os.path.isabs(name):
            return None
        path = os.path.normpath(name)
        for root in (self.container_outdir, self.outdir):
            if root is not None and (path == root or path.startswith(root + os.sep)):
                return os.path.join(self.outdir, os.path.relpath(path, root)) if path != root else self.outdir
        if not self.in_container:
            raise JobFailedError(
                f"InitialWorkDirRequirement: entryname {name!r} is outside the output directory; an "
                "absolute entryname needs a DockerRequirement under 'requirements'", retryable=False)
        self._claim(path, "InitialWorkDirRequirement entryname")
        return path

    def _lock(self, path: str, what: str) -> None:
        """Take the host-wide lock of a container path (jobs of other processes wait their turn).

        A job of the same thread (event loop) that holds it makes this one unsupported at
        once: waiting would block the loop the holder needs to finish. Jobs of other threads
        or processes wait (up to ``LOCK_WAIT`` seconds).
        """
        if path in _held():
            raise UnsupportedRequirementError(
                f"{what} {path!r}: another job of this run uses the same path on this host "
                "(no container engine to isolate them)")
        os.makedirs(LOCK_DIR, exist_ok=True)
        name = hashlib.sha1(path.encode()).hexdigest() + ".lock"
        fd = os.open(os.path.join(LOCK_DIR, name), os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise UnsupportedRequirementError(
                        f"{what} {path!r}: held by another job on this host for more than "
                        f"{LOCK_WAIT:g} seconds") from None
                time.sleep(0.05)
        _held().add(path)
        self._locks.append((path, fd))

    def _claim(self, path: str, what: str) -> None:
        """Create the missing ancestors of ``path`` (recorded for removal); ``path`` must not exist."""
        self._lock(path, what)
        if os.path.lexists(path):
            raise UnsupportedRequirementError(
                f"{what} {path!r}: the path already exists on this host (no container engine to "
                "isolate the job); refusing to touch it")
        missing: list[str] = []
        parent = os.path.dirname(path)
        while parent and not os.path.lexists(parent):
            missing.append(parent)
            parent = os.path.dirname(parent)
        try:
            if missing:
                os.makedirs(missing[0])
        except OSError as exc:
            raise UnsupportedRequirementError(f"{what} {path!r}: cannot create it on this host: {exc}") from exc
        self.created.append(missing[-1] if missing else path)

    def cleanup(self) -> None:
        """Remove every path created for the job (links are removed, never followed)."""
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                if os.path.islink(path) or not os.path.isdir(path):
                    os.unlink(path)
                else:
                    shutil.rmtree(path)
        self.created.clear()
        for path, fd in reversed(self._locks):
            _held().discard(path)
            with contextlib.suppress(OSError):
                os.close(fd)  # releases the lock
        self._locks.clear()
