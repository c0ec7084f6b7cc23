"""Checks and signal handling shared by the commands, so that they fail early and cleanly.

* :func:`terminate_like_interrupt`: SIGTERM stops a command the way Ctrl-C does (its
  ``finally`` blocks run, so the embedded server it started is stopped when it was the
  last client), with exit code 143.
* :func:`check_outdir`: ``--outdir`` must be a directory (or creatable), checked before
  anything is recorded, not after the work.
* :func:`check_job_values`: values nested too deeply, and integers beyond 64 bits where a
  CWL ``int``/``long`` is declared, are refused up front (exit 2) instead of a traceback or
  a job that fails late.
* :func:`bus_error_message`: a bus error, with the full disk named when that is the cause.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from streamflow.errors import InputValidationError

__all__ = [
    "EXIT_TERMINATED",
    "MAX_VALUE_DEPTH",
    "bus_error_message",
    "check_job_values",
    "check_outdir",
    "declared_types",
    "has_big_numbers",
    "terminate_like_interrupt",
    "terminated",
]

MAX_VALUE_DEPTH = 200
"""How deeply a job value may nest (lists and objects); deeper ones are refused (exit 2)."""

EXIT_TERMINATED = 128 + int(signal.SIGTERM)

_INT64 = (-(2**63), 2**63 - 1)
_INT32 = (-(2**31), 2**31 - 1)
_BIG = float(2**63)
_terminated = False


def terminated() -> bool:
    """Whether this process received SIGTERM (see :func:`terminate_like_interrupt`)."""
    return _terminated


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    global _terminated
    _terminated = True
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        # asyncio.run's own SIGINT handler cancels the main task (finally blocks run, the
        # bus is left properly), then raises KeyboardInterrupt.
        handler(signal.SIGINT, frame)
        return
    raise KeyboardInterrupt


def terminate_like_interrupt() -> None:
    """Make SIGTERM behave like Ctrl-C in this process (call from the main thread).

    Without it, SIGTERM ends the process at once: no ``finally`` runs, and a shared
    embedded server started by this command is left running with no client.
    """
    with contextlib.suppress(ValueError):  # not the main thread (the runner daemon's commands)
        signal.signal(signal.SIGTERM, _on_sigterm)


def check_outdir(outdir: str) -> str | None:
    """The problem with ``--outdir``, or None when outputs can be delivered there."""
    path = Path(outdir)
    if path.exists() and not path.is_dir():
        return f"--outdir {outdir}: exists and is not a directory"
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return f"--outdir {outdir}: {probe} is not a directory"
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return f"--outdir {outdir}: {probe} is not writable"
    return None


def _depth_exceeded(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:  # iterative: a deep value must not exhaust the interpreter's stack here
        item, depth = stack.pop()
        if isinstance(item, Mapping | list | tuple):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, Mapping) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _integral_types(spec: Any) -> set[str]:
    """The integral CWL types a parameter's type allows at the top level or in arrays."""
    found: set[str] = set()
    if isinstance(spec, str):
        name = spec.rstrip("?").removesuffix("[]").rstrip("?")
        name = name.rsplit("#", 1)[-1]
        if name in ("int", "long"):
            found.add(name)
    elif isinstance(spec, list):
        for item in spec:
            found |= _integral_types(item)
    elif isinstance(spec, Mapping) and spec.get("type") == "array":
        found |= _integral_types(spec.get("items"))
    return found


def _big_numbers(value: Any) -> list[float | int]:
    found: list[float | int] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int) and not _INT64[0] <= item <= _INT64[1]:
            found.append(item)
        elif isinstance(item, float) and abs(item) >= _BIG and item == item and item == int(item):
            found.append(item)  # a number beyond 64 bits, already carried as a double
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return found


def has_big_numbers(inputs: Mapping[str, Any]) -> bool:
    """Whether the input object holds numbers beyond 64 bits (then :func:`check_job_values`
    needs the declared types)."""
    return bool(_big_numbers(dict(inputs)))


def check_job_values(inputs: Mapping[str, Any], declared: Mapping[str, Any] | None = None) -> None:
    """Refuse job values that could only fail later.

    Args:
        inputs: the run's input object.
        declared: input name -> its declared CWL type (to find ``int``/``long`` inputs).

    Raises:
        InputValidationError: naming the input (exit code 2).
    """
    for name, value in inputs.items():
        if _depth_exceeded(value, MAX_VALUE_DEPTH):
            raise InputValidationError(
                f"input {name!r}: nested more than {MAX_VALUE_DEPTH} levels deep (lists and objects); "
                "such values are refused")
        integral = _integral_types((declared or {}).get(name))
        big = _big_numbers(value) if integral else []
        if big:
            shown = big[0] if isinstance(big[0], int) else int(big[0])
            kind = "long" if "long" in integral else "int"
            bits = 64 if kind == "long" else 32
            raise InputValidationError(
                f"input {name!r}: {shown} does not fit a CWL {kind} ({bits}-bit signed integer)")
        if "int" in integral and "long" not in integral:
            for item in _plain_ints(value):
                if not _INT32[0] <= item <= _INT32[1]:
                    raise InputValidationError(
                        f"input {name!r}: {item} does not fit a CWL int (32-bit signed integer)")


def _plain_ints(value: Any) -> list[int]:
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        return [value]
    if isinstance(value, list):
        return [i for item in value for i in _plain_ints(item)]
    return []


def declared_types(process: Any) -> dict[str, Any]:
    """Input name -> declared type of a cwl_utils process (empty when it cannot be read)."""
    try:
        from streamflow.cwl.utils import plain, shortname

        view = plain(process)
        return {shortname(str(p["id"])): p.get("type") for p in view.get("inputs") or []}
    except Exception:  # a check, not a validator: never fail the run for it
        return {}


def bus_error_message(exc: BaseException, *, embedded: bool) -> str:
    """The text of a bus error, naming the full disk when that is the cause."""
    text = str(exc) or repr(exc)
    if embedded:
        from streamflow.bus import disk_problem

        problem = disk_problem()
        if problem is not None and problem not in text:
            text = f"{text}; {problem}"
    return text


def eprint(message: str) -> None:
    """Print a ``streamflow:`` message on stderr."""
    print(f"streamflow: {message}", file=sys.stderr)
