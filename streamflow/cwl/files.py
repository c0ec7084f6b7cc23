"""File and Directory objects: locations, metadata, listings, secondary files and contents."""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin

from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.cwl.utils import (
    checksum,
    fill_file_names,
    has_scheme,
    is_directory,
    is_file,
    path_to_uri,
    uri_to_path,
)

__all__ = [
    "CONTENTS_LIMIT",
    "FileProblem",
    "fill_object",
    "list_directory",
    "load_step_input",
    "read_contents",
    "secondary_files",
]

CONTENTS_LIMIT = 64 * 1024
"""``loadContents`` reads at most this many bytes (CWL v1.2); larger files are an error."""


class FileProblem(Exception):
    """A File or Directory is missing or unreadable."""


def _normalise_location(value: dict[str, Any], base_dir: str) -> None:
    location = value.get("location")
    if location is None and value.get("path"):
        path = str(value["path"])
        location = path_to_uri(os.path.join(base_dir, uri_to_path(path)))
    if location is None:
        return
    location = str(location)
    if not has_scheme(location):
        location = urljoin(path_to_uri(base_dir) + "/", location)
    elif location.startswith("file:"):
        location = path_to_uri(uri_to_path(location))
    value["location"] = location


def fill_object(
    value: dict[str, Any],
    *,
    base_dir: str,
    check: bool = True,
    listing: str | None = None,
    with_checksum: bool = False,
) -> dict[str, Any]:
    """Fill a File/Directory object in place: location, path, names, size, listing.

    File and Directory literals (``contents`` or ``listing`` without ``location``) get a
    ``_:`` location; they are written to disk when the job is staged.

    Args:
        value: the object; modified in place (and returned).
        base_dir: directory that relative locations are resolved against.
        check: require local files and directories to exist.
        listing: ``no_listing``, ``shallow_listing`` or ``deep_listing`` for directories
            without a listing; None leaves listings alone.
        with_checksum: compute ``checksum`` for files.

    Returns:
        ``value``.

    Raises:
        FileProblem: the object does not exist or has the wrong kind.
    """
    cls = value.get("class")
    _normalise_location(value, base_dir)
    location = value.get("location")
    if location is None:
        if cls == "File" and "contents" not in value:
            raise FileProblem("File object has neither 'location', 'path' nor 'contents'")
        value["location"] = "_:" + str(uuid.uuid4())
        value.setdefault("basename", str(uuid.uuid4()))
        value.pop("path", None)
        if cls == "File":
            value["size"] = len(str(value.get("contents", "")).encode())
            fill_file_names(value)
            value.pop("dirname", None)
        for entry in value.get("listing") or []:
            if isinstance(entry, dict):
                fill_object(
                    entry, base_dir=base_dir, check=check, listing=listing, with_checksum=with_checksum
                )
        return value
    location = str(location)
    if location.startswith("_:"):
        if cls == "File":
            value.setdefault("basename", str(uuid.uuid4()))
            fill_file_names(value)
            value.pop("dirname", None)
        for entry in value.get("listing") or []:
            if isinstance(entry, dict):
                fill_object(
                    entry, base_dir=base_dir, check=check, listing=listing, with_checksum=with_checksum
                )
        return value
    if not location.startswith("file:"):
        value.setdefault("basename", posixpath.basename(location.rstrip("/")))
        return value
    path = uri_to_path(location)
    value["path"] = path
    fill_file_names(value)
    if cls == "File":
        try:
            st = os.stat(path)
        except OSError as exc:
            if check:
                raise FileProblem(f"file not found: {path}") from exc
        else:
            if check and not os.path.isfile(path):
                raise FileProblem(f"expected a file, found a directory: {path}")
            value["size"] = st.st_size
            if with_checksum:
                value["checksum"] = checksum(path)
    elif cls == "Directory":
        if check and not os.path.isdir(path):
            raise FileProblem(f"directory not found: {path}")
        if "listing" in value and isinstance(value["listing"], list):
            # A listing that is already there was loaded at the right depth: a shallow
            # listing's subdirectories must stay without one.
            inner = None if listing == "shallow_listing" else listing
            for entry in value["listing"]:
                if isinstance(entry, dict):
                    fill_object(
                        entry, base_dir=path, check=check, listing=inner, with_checksum=with_checksum
                    )
        elif listing in ("shallow_listing", "deep_listing") and os.path.isdir(path):
            value["listing"] = list_directory(
                path, deep=listing == "deep_listing", with_checksum=with_checksum
            )
    for sf in value.get("secondaryFiles") or []:
        if isinstance(sf, dict):
            fill_object(
                sf,
                base_dir=posixpath.dirname(path),
                check=check,
                listing=listing,
                with_checksum=with_checksum,
            )
    return value


def list_directory(path: str, *, deep: bool, with_checksum: bool = False) -> list[dict[str, Any]]:
    """Return the CWL listing of a local directory (sorted by name).

    Args:
        path: the directory.
        deep: recurse into subdirectories (``deep_listing``); otherwise subdirectories have
            no ``listing`` (``shallow_listing``).
        with_checksum: compute checksums of files.

    Returns:
        File and Directory objects.
    """
    entries: list[dict[str, Any]] = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if os.path.isdir(full):
            entry: dict[str, Any] = {"class": "Directory", "location": path_to_uri(full)}
            fill_object(entry, base_dir=path, check=False)
            if deep:
                entry["listing"] = list_directory(full, deep=True, with_checksum=with_checksum)
        else:
            entry = {"class": "File", "location": path_to_uri(full)}
            fill_object(entry, base_dir=path, check=False, with_checksum=with_checksum)
        entries.append(entry)
    return entries


def read_contents(value: Mapping[str, Any]) -> str:
    """Read the first 64 KiB of a File for ``loadContents``.

    Raises:
        FileProblem: the file is larger than 64 KiB or cannot be read.
    """
    if "contents" in value and not value.get("path"):
        return str(value["contents"])
    path = str(value.get("path") or uri_to_path(str(value.get("location", ""))))
    try:
        with open(path, "rb") as handle:
            data = handle.read(CONTENTS_LIMIT + 1)
    except OSError as exc:
        raise FileProblem(f"cannot read {path} for loadContents: {exc}") from exc
    if len(data) > CONTENTS_LIMIT:
        raise FileProblem(f"loadContents: {path} is larger than the 64 KiB limit")
    return data.decode("utf-8", errors="replace")


def _substitute(basename: str, pattern: str) -> str:
    while pattern.startswith("^"):
        root, ext = posixpath.splitext(basename)
        basename = root if ext else basename
        pattern = pattern[1:]
    return basename + pattern


def secondary_files(
    primary: dict[str, Any],
    specs: list[Any],
    *,
    evaluator: ExpressionEvaluator,
    inputs: Mapping[str, Any],
    runtime: Mapping[str, Any] | None,
    required_default: bool,
    check: bool = True,
    discover: bool = True,
) -> list[dict[str, Any]]:
    """Discover the secondary files of ``primary`` next to it, following CWL patterns.

    Patterns may start with ``^`` (strip an extension), end with ``?`` (optional), or be
    expressions returning such patterns, File/Directory objects or lists of them. Entries already in
    ``primary["secondaryFiles"]`` are kept and not looked up again.

    Args:
        primary: the primary File (filled).
        specs: the ``secondaryFiles`` of the parameter (dicts with ``pattern``/``required``,
            or plain strings).
        evaluator: evaluates expression patterns (``self`` is the primary file).
        inputs: the ``inputs`` object for expressions.
        runtime: the ``runtime`` object for expressions, if any.
        required_default: whether patterns without ``required`` are required.
        check: check that required secondary files exist.
        discover: look for files matching the patterns next to the primary file; otherwise
            only the entries already in ``primary["secondaryFiles"]`` (and File objects
            returned by expressions) count, and a required one that is not there is an error.

    Returns:
        The secondary File/Directory objects (filled).

    Raises:
        FileProblem: a required secondary file is missing.
    """
    existing: list[dict[str, Any]] = [
        sf for sf in primary.get("secondaryFiles") or [] if isinstance(sf, dict)
    ]
    seen = {
        str(sf.get("basename") or posixpath.basename(uri_to_path(str(sf.get("location", "")))))
        for sf in existing
    }
    location = str(primary.get("location", ""))
    base = location.rsplit("/", 1)[0] if "/" in location else ""
    base_path = uri_to_path(base) if base.startswith("file://") else ""
    result = list(existing)
    for spec in specs:
        if isinstance(spec, Mapping):
            pattern = spec.get("pattern")
            required = spec.get("required")
        else:
            pattern, required = spec, None
        if has_expression(required):
            required = bool(evaluator.evaluate(required, inputs, self_=primary, runtime=runtime))
        candidates: list[Any]
        evaluated_pattern = has_expression(pattern)
        if evaluated_pattern:
            evaluated = evaluator.evaluate(pattern, inputs, self_=primary, runtime=runtime)
            candidates = evaluated if isinstance(evaluated, list) else [evaluated]
        else:
            candidates = [pattern]
        for candidate in candidates:
            if candidate is None:
                continue
            is_required = required_default if required is None else bool(required)
            if isinstance(candidate, Mapping):
                entry = dict(candidate)
                fill_object(entry, base_dir=base_path, check=False)
                name = str(entry.get("basename"))
                if name not in seen:
                    seen.add(name)
                    result.append(entry)
                continue
            text = str(candidate)
            if text.endswith("?"):
                text, is_required = text[:-1], False
            # An expression returns a file name (relative to the primary's folder); a
            # literal pattern is a suffix, optionally after stripping extensions (``^``).
            name = text if evaluated_pattern else _substitute(str(primary.get("basename", "")), text)
            if name in seen:
                continue
            if not discover:
                if is_required and check:
                    raise FileProblem(f"missing required secondary file {name!r} (pattern {text!r})")
                continue
            if not base_path:
                if is_required and check:
                    raise FileProblem(f"cannot locate secondary file {name!r} of a non-local file {location}")
                continue
            full = os.path.join(base_path, name)
            if os.path.isdir(full):
                entry = {"class": "Directory", "location": path_to_uri(full)}
            elif os.path.exists(full):
                entry = {"class": "File", "location": path_to_uri(full)}
            else:
                if is_required and check:
                    raise FileProblem(f"missing required secondary file {full} (pattern {text!r})")
                continue
            fill_object(entry, base_dir=base_path, check=False)
            seen.add(name)
            result.append(entry)
    return result


def is_file_or_directory(value: Any) -> bool:
    """Return whether ``value`` is a File or Directory object."""
    return is_file(value) or is_directory(value)


def load_step_input(value: Any, *, contents: bool, listing: str | None) -> Any:
    """Apply a workflow step input's ``loadContents``/``loadListing`` to its value.

    Files (alone or in arrays) get ``contents`` (at most 64 KiB); local Directories get a
    listing of the given depth when they have none. The value is copied, not modified.

    Raises:
        FileProblem: a file cannot be read or is larger than 64 KiB.
    """
    if isinstance(value, list):
        return [load_step_input(v, contents=contents, listing=listing) for v in value]
    if not isinstance(value, dict):
        return value
    if is_file(value) and contents:
        result = dict(value)
        result["contents"] = read_contents(value)
        return result
    if is_directory(value) and listing in ("shallow_listing", "deep_listing") and "listing" not in value:
        location = str(value.get("location") or "")
        path = str(value.get("path") or (uri_to_path(location) if location.startswith("file:") else ""))
        if path and os.path.isdir(path):
            result = dict(value)
            result["listing"] = list_directory(path, deep=listing == "deep_listing")
            return result
    return value
