"""Secret inputs (the ``cwltool:Secrets`` hint): kept out of events, reports and crates.

A CWL process may mark inputs as secret::

    $namespaces: {cwltool: "http://commonwl.org/cwltool#"}
    hints:
      - class: cwltool:Secrets
        secrets: [password]

When the inputs are validated (:func:`streamflow.cwl.inputs.fill_and_validate_inputs`),
each string of a secret input (a string, or the strings of an array or record) is
replaced by a *placeholder*, ``(sf-secret:<32 hex digits>)``, and the value is written to
``$STREAMFLOW_HOME/secrets/<hex>``: a file of mode 0600 in a directory of mode 0700,
created exclusively, never through a symbolic link. Only placeholders travel from then on:
``RunSubmitted``, ``TokenEmitted``, ``JobRequested`` and everything built from the log
(``status``, ``report``, ``prov`` crates) hold the placeholder, never the value.

The worker reveals the values right before the command runs
(:func:`revealing_command`): placeholders in the command line and in the environment are
replaced by the values read from the store, so only the job's process sees them. A value
is not revealed elsewhere: files a tool writes from an expression (``InitialWorkDir``) and
expressions that compute with the value see the placeholder, as with cwltool.

The store is local to the machine that submitted the run: an agent on another machine
(without the same ``STREAMFLOW_HOME``) cannot reveal the value and fails the job saying so.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from streamflow.errors import StreamFlowError

__all__ = [
    "PLACEHOLDER",
    "SecretNotAvailableError",
    "conceal",
    "is_placeholder",
    "reveal",
    "revealing_command",
    "secret_inputs",
]

PLACEHOLDER = re.compile(r"\(sf-secret:([0-9a-f]{32})\)")
"""How a secret value is written wherever the value itself must not be."""

_HINT_CLASSES = ("http://commonwl.org/cwltool#Secrets", "cwltool:Secrets", "Secrets")


class SecretNotAvailableError(StreamFlowError):
    """A placeholder whose value is not in this machine's store."""

    retryable = False


def _store() -> Path:
    home = Path(os.environ.get("STREAMFLOW_HOME") or Path.home() / ".streamflow")
    store = home / "secrets"
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    if store.is_symlink() or (store.stat().st_mode & 0o077):
        os.chmod(store, 0o700, follow_symlinks=False)
    return store


def _shortname(value: str) -> str:
    return value.rsplit("#", 1)[-1].rsplit("/", 1)[-1]


def secret_inputs(hints: Sequence[Any], requirements: Sequence[Any] = ()) -> set[str]:
    """The names of the inputs a ``cwltool:Secrets`` hint (or requirement) marks secret."""
    names: set[str] = set()
    for entry in [*hints, *requirements]:
        cls = entry.get("class") if isinstance(entry, Mapping) else getattr(entry, "class_", None)
        if cls not in _HINT_CLASSES:
            continue
        listed = entry.get("secrets") if isinstance(entry, Mapping) else getattr(entry, "secrets", None)
        names.update(_shortname(str(item)) for item in listed or [])
    return names


def is_placeholder(value: Any) -> bool:
    """Whether ``value`` is exactly one placeholder."""
    return isinstance(value, str) and PLACEHOLDER.fullmatch(value) is not None


def _put(value: str) -> str:
    key = secrets.token_hex(16)
    path = _store() / key
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value)
    return f"(sf-secret:{key})"


def _conceal_value(value: Any) -> Any:
    if isinstance(value, str):
        return value if is_placeholder(value) else _put(value)
    if isinstance(value, list):
        return [_conceal_value(item) for item in value]
    if isinstance(value, dict) and value.get("class") not in ("File", "Directory"):
        return {key: _conceal_value(item) for key, item in value.items()}
    return value


def conceal(inputs: Mapping[str, Any], names: set[str]) -> dict[str, Any]:
    """Return ``inputs`` with the strings of the ``names`` inputs replaced by placeholders
    (values already concealed are kept as they are)."""
    return {key: (_conceal_value(value) if key in names else value) for key, value in inputs.items()}


def _read(key: str) -> str:
    path = _store() / key
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            raise SecretNotAvailableError(
                f"a secret input is not available on this machine (no {path}): secrets stay in the "
                "STREAMFLOW_HOME of the machine that submitted the run") from None
        raise
    with os.fdopen(fd, encoding="utf-8") as handle:
        return handle.read()


def reveal(text: str) -> str:
    """Replace every placeholder in ``text`` by its value.

    Raises:
        SecretNotAvailableError: a value is not in this machine's store.
    """
    if "(sf-secret:" not in text:
        return text
    return PLACEHOLDER.sub(lambda match: _read(match.group(1)), text)


def revealing_command(run: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``RunCommand`` so that the command line and environment it receives get the
    secret values in place of their placeholders (only the job's process sees them)."""

    async def _run(command: list[str], *, environment: Mapping[str, str] | None = None, **kwargs: Any) -> Any:
        argv = [reveal(word) for word in command]
        env = {key: reveal(value) for key, value in environment.items()} if environment is not None else None
        return await run(argv, environment=env, **kwargs)

    return _run
