"""Private, unique working directories for job attempts.

Every attempt of a job runs in a directory of its own, created fresh by ``mkdir`` (never
reused: a resumed or redelivered job gets a new one), under a *private base* that only
this user can enter::

    <base>/<uid>-<store digest>/<run>/<job>/<attempt>-<generation>-<delivery>-<random>

``<base>`` is what the run recorded (``--workdir``, default ``$TMPDIR/streamflow-jobs``);
it may be shared between users (like ``/tmp``), so it must be owned by us or by root and,
when others may write to it, sticky (so that nobody else can rename or replace what we
create in it). The private base is owned by us with mode 0700, and its name carries a
digest of the StreamFlow store (``$STREAMFLOW_HOME``), so two stores never share a
directory even for the same run id. Each level is created with ``mkdir`` and then checked
through a descriptor opened with ``O_NOFOLLOW``: a symbolic link, a directory owned by
someone else or a private base with a looser mode is refused with
:class:`UnsafeDirectoryError`, never followed or repaired.

:func:`fresh_attempt_dir` is what a worker calls per job: it remembers, per process, the
private bases and run directories it has checked, and does not check again what its own
``mkdir`` has just created inside a directory only we can write to (nobody else can have
put a link or a foreign directory there). A job directory that already existed (a retry,
a redelivery) is checked as before; anything unexpected (a remembered directory removed
meanwhile) forgets what was remembered and takes the full, checked path again.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from pathlib import Path

from streamflow.errors import StreamFlowError

__all__ = ["UnsafeDirectoryError", "fresh_attempt_dir", "new_attempt_dir", "private_base", "store_identity"]


class UnsafeDirectoryError(StreamFlowError):
    """A job directory (or one of its parents) is not safe to use: not ours, a link, too open."""

    retryable = False


def store_identity() -> str:
    """The StreamFlow store this process uses: the absolute ``$STREAMFLOW_HOME`` (default
    ``~/.streamflow``), as the private base's digest is computed from it."""
    home = os.environ.get("STREAMFLOW_HOME") or str(Path.home() / ".streamflow")
    return os.path.realpath(os.path.abspath(home))


def _open_dir(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if os.path.islink(path):
            raise UnsafeDirectoryError(f"job directory {path} is a symbolic link: refusing to follow it") from exc
        raise UnsafeDirectoryError(f"job directory {path} cannot be opened: {exc.strerror or exc}") from exc


def _check(path: Path, *, private: bool, shared_ok: bool = False) -> None:
    """Check ``path`` through an ``O_NOFOLLOW`` descriptor (see the module docstring)."""
    fd = _open_dir(path)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    uid = os.geteuid()
    if info.st_uid != uid and not (shared_ok and info.st_uid == 0):
        raise UnsafeDirectoryError(
            f"job directory {path} belongs to uid {info.st_uid}, not to us (uid {uid}): refusing to use it "
            "(choose another --workdir or TMPDIR)")
    mode = stat.S_IMODE(info.st_mode)
    if private and mode & 0o077:
        raise UnsafeDirectoryError(
            f"job directory {path} has mode {mode:04o}: it must be private (0700); refusing to use it")
    if not private and mode & 0o022 and not mode & stat.S_ISVTX:
        raise UnsafeDirectoryError(
            f"job directory base {path} is writable by others without the sticky bit (mode {mode:04o}): "
            "refusing to use it (choose another --workdir or TMPDIR)")


def _mkdir_private(path: Path) -> None:
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise UnsafeDirectoryError(f"cannot create job directory {path}: {exc.strerror or exc}") from exc


def private_base(base: str | os.PathLike[str], store: str | None = None) -> Path:
    """Create (or verify) this user's private base of job directories under ``base``.

    Args:
        base: the shared base (``--workdir``); created (mode 0700) with its missing parents.
        store: what makes the base unique (default: :func:`store_identity`).

    Returns:
        ``<base>/<uid>-<digest of store>``, a directory owned by us with mode 0700.

    Raises:
        UnsafeDirectoryError: ``base`` or the private base is a link, not ours, or too open.
    """
    root = Path(os.path.abspath(base))
    if not os.path.lexists(root):
        try:
            os.makedirs(root, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise UnsafeDirectoryError(f"cannot create job directory base {root}: {exc.strerror or exc}") from exc
    _check(root, private=False, shared_ok=True)
    digest = hashlib.sha256((store or store_identity()).encode()).hexdigest()[:16]
    mine = root / f"{os.geteuid()}-{digest}"
    _mkdir_private(mine)
    _check(mine, private=True)
    return mine


def new_attempt_dir(base: Path, run_id: str, job: str, *, attempt: int, generation: int, delivery: int) -> Path:
    """Create a new, empty directory for one attempt of a job.

    Args:
        base: a private base (:func:`private_base`).
        run_id: the run (a valid subject token: no ``/``).
        job: the job id (likewise).
        attempt: the job's attempt number.
        generation: how many times the run was resumed when the task was queued.
        delivery: the task's delivery count.

    Returns:
        ``<base>/<run>/<job>/<attempt>-<generation>-<delivery>-<random>``, mode 0700, just
        created by us (``mkdir`` fails on anything already there, so nothing is reused).

    Raises:
        UnsafeDirectoryError: a level is a link or not ours, or ``run_id``/``job`` is not a
            single path component.
    """
    for part in (run_id, job):
        if not part or part in (".", "..") or "/" in part or "\0" in part:
            raise UnsafeDirectoryError(f"{part!r} cannot name a job directory")
    parent = base
    for part in (run_id, job):
        parent = parent / part
        _mkdir_private(parent)
        _check(parent, private=True)
    while True:
        candidate = parent / f"{attempt}-{generation}-{delivery}-{secrets.token_hex(4)}"
        try:
            os.mkdir(candidate, 0o700)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UnsafeDirectoryError(f"cannot create job directory {candidate}: {exc.strerror or exc}") from exc
        _check(candidate, private=True)
        return candidate


#: Private bases checked by this process: (absolute base, ``$STREAMFLOW_HOME`` or None) -> base.
_bases: dict[tuple[str, str | None], Path] = {}
#: Run directories created or checked by this process inside a private base.
_runs: set[Path] = set()


def fresh_attempt_dir(base: str, run_id: str, job: str, *, attempt: int, generation: int, delivery: int) -> Path:
    """:func:`new_attempt_dir` under :func:`private_base` of ``base``, checking less per job.

    The private base and the run's directory are checked once per process (see the module
    docstring); a job directory is checked only if it existed already, and the attempt's
    directory, which ``mkdir`` has just created in it, is not checked again. Blocking: run
    it in a thread.

    Raises:
        UnsafeDirectoryError: as :func:`new_attempt_dir`.
    """
    for part in (run_id, job):
        if not part or part in (".", "..") or "/" in part or "\0" in part:
            raise UnsafeDirectoryError(f"{part!r} cannot name a job directory")
    key = (os.path.abspath(base), os.environ.get("STREAMFLOW_HOME"))
    mine = _bases.get(key)
    try:
        if mine is None:
            mine = _bases[key] = private_base(base)
        run_dir = mine / run_id
        if run_dir not in _runs:
            _mkdir_private(run_dir)
            _check(run_dir, private=True)
            _runs.add(run_dir)
        return _attempt_in(run_dir / job, attempt=attempt, generation=generation, delivery=delivery)
    except (OSError, UnsafeDirectoryError):
        # Something moved under a remembered directory (or is not what it should be):
        # forget, and take the fully checked path (which raises if it is really unsafe).
        _bases.pop(key, None)
        if mine is not None:
            _runs.discard(mine / run_id)
        return new_attempt_dir(private_base(base), run_id, job, attempt=attempt, generation=generation,
                               delivery=delivery)


def _attempt_in(job_dir: Path, *, attempt: int, generation: int, delivery: int) -> Path:
    try:
        os.mkdir(job_dir, 0o700)
    except FileExistsError:
        _check(job_dir, private=True)  # not made just now: check it as new_attempt_dir does
    while True:
        candidate = job_dir / f"{attempt}-{generation}-{delivery}-{secrets.token_hex(4)}"
        try:
            os.mkdir(candidate, 0o700)  # inside a directory only we can write to: ours, as made
        except FileExistsError:
            continue
        return candidate
