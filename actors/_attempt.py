"""What a worker does around one attempt besides running it: recording its command line,
finding File values in its inputs, copying a rollback attempt's outputs into place,
discarding an unused directory (helpers of :mod:`actors.worker`)."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from events.schema import JobCompleted, JobFailed

__all__ = ["COMMAND_CHARS", "COMMAND_WORDS", "discard_workdir", "has_files", "recording", "restore_outputs",
           "with_duration"]

COMMAND_WORDS = 1000
COMMAND_CHARS = 16384


def recording(run: Callable[..., Awaitable[Any]], into: list[str]) -> Callable[..., Awaitable[Any]]:
    """Wrap a ``RunCommand``: the command line it is given (placeholders, not secret values:
    ``run`` reveals them afterwards) is kept in ``into``, shortened past ``COMMAND_WORDS`` words
    or ``COMMAND_CHARS`` characters."""

    async def _run(command: list[str], *args: Any, **kwargs: Any) -> Any:
        kept: list[str] = []
        size = 0
        for word in command:
            size += len(word)
            if len(kept) >= COMMAND_WORDS or size > COMMAND_CHARS:
                kept.append(f"... ({len(command) - len(kept)} more arguments)")
                break
            kept.append(word)
        into[:] = kept
        return await run(command, *args, **kwargs)

    return _run


def discard_workdir(workdir: Path) -> None:
    """Remove an attempt directory that was never used (its empty ``out`` and ``tmp`` too)."""
    for path in (workdir / "out", workdir / "tmp", workdir):
        with contextlib.suppress(OSError):
            path.rmdir()


def has_files(value: Any) -> bool:
    """Whether a JSON value holds a File or Directory object, at any depth."""
    if isinstance(value, dict):
        return value.get("class") in ("File", "Directory") or any(has_files(v) for v in value.values())
    if isinstance(value, list):
        return any(has_files(v) for v in value)
    return False


def restore_outputs(body: JobCompleted, previous: dict[str, Any]) -> JobCompleted:
    """Copy the files of a rollback attempt to the paths the completed attempt recorded."""
    import shutil

    def _walk(new: Any, old: Any) -> None:
        if isinstance(new, dict) and isinstance(old, dict):
            if new.get("class") in ("File", "Directory") and old.get("path") and new.get("path"):
                target = Path(old["path"])
                target.parent.mkdir(parents=True, exist_ok=True)
                if new["class"] == "Directory":
                    shutil.copytree(new["path"], target, dirs_exist_ok=True)
                else:
                    shutil.copy2(new["path"], target)
                for sec_new, sec_old in zip(new.get("secondaryFiles") or [], old.get("secondaryFiles") or [],
                                            strict=False):
                    _walk(sec_new, sec_old)
                return
            for key in new:
                if key in old:
                    _walk(new[key], old[key])
        elif isinstance(new, list) and isinstance(old, list):
            for n, o in zip(new, old, strict=False):
                _walk(n, o)

    _walk(body.outputs, previous)
    # The copies were made here: the location's own copy of the new attempt is not at these paths.
    return msgspec.structs.replace(body, outputs=previous, location_paths={})


def with_duration(body: JobCompleted | JobFailed, duration: float) -> JobCompleted | JobFailed:
    return msgspec.structs.replace(body, duration=duration)
