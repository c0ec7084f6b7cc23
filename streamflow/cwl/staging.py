"""Staging a job's files: file literals and ``InitialWorkDirRequirement``.

There is no container here: the tool sees host paths. Inputs stay where they are, except
those listed in ``InitialWorkDirRequirement``, which appear in the output directory (a
symbolic link when read-only, a copy when ``writable``, unless ``InplaceUpdateRequirement``
asks for in-place updates). Their ``path`` in the input object is rewritten to the staged
location, so the command line and expressions agree with what the tool sees.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.cwl.files import fill_object
from streamflow.cwl.hostpaths import HostPaths
from streamflow.cwl.utils import (
    Requirements,
    fill_file_names,
    is_directory,
    is_file,
    path_to_uri,
    uri_to_path,
)
from streamflow.errors import JobFailedError, UnsupportedRequirementError

__all__ = ["colocate_inputs", "materialize_literals", "stage_initial_workdir", "walk_files"]


def walk_files(value: Any, visit: Callable[[dict[str, Any]], None]) -> None:
    """Call ``visit`` on every File/Directory object in ``value`` (secondary files and listings included)."""
    if isinstance(value, list):
        for item in value:
            walk_files(item, visit)
    elif isinstance(value, dict):
        if is_file(value) or is_directory(value):
            visit(value)
            for key in ("secondaryFiles", "listing"):
                walk_files(value.get(key), visit)
        else:
            for item in value.values():
                walk_files(item, visit)


def _write_literal(value: dict[str, Any], target: str) -> None:
    if is_file(value):
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(str(value.get("contents", "")))
    else:
        os.makedirs(target, exist_ok=True)
        for entry in value.get("listing") or []:
            if isinstance(entry, dict):
                _stage_object(
                    entry,
                    os.path.join(target, str(entry.get("basename") or uuid.uuid4())),
                    writable=True,
                    inplace=False,
                )
    value["location"] = path_to_uri(target)
    value["path"] = target
    value.pop("basename", None)
    fill_file_names(value)
    if is_file(value):
        value["size"] = os.path.getsize(target)


def materialize_literals(inputs: dict[str, Any], stage_dir: str, *, flat: bool = False) -> None:
    """Write File/Directory literals (``_:`` locations) of ``inputs`` to ``stage_dir``, in place.

    Args:
        inputs: the object holding the literals; their locations and paths are updated.
        stage_dir: where to write them.
        flat: write each literal directly as ``stage_dir/basename`` (otherwise in a
            private subdirectory, so equal basenames cannot collide).
    """

    def visit(value: dict[str, Any]) -> None:
        location = str(value.get("location", ""))
        if location.startswith("_:") or (
            "location" not in value and ("contents" in value or "listing" in value)
        ):
            name = str(value.get("basename") or uuid.uuid4())
            target = (
                os.path.join(stage_dir, name) if flat else os.path.join(stage_dir, uuid.uuid4().hex, name)
            )
            _write_literal(value, target)

    walk_files(inputs, visit)


def colocate_inputs(inputs: dict[str, Any], stage_dir: str) -> None:
    """Make every input file visible under its ``basename``, next to its secondary files.

    Inputs stay where they are when their on-disk name is their ``basename`` and their
    secondary files sit beside them; otherwise the file and its secondary files are
    symlinked into a private subdirectory of ``stage_dir`` and their paths rewritten.

    Args:
        inputs: the input object (modified in place).
        stage_dir: where to create the links.
    """

    def consistent(value: dict[str, Any]) -> bool:
        path = str(value.get("path") or "")
        if not path or os.path.basename(path.rstrip("/")) != value.get("basename"):
            return False
        folder = os.path.dirname(path)
        for sf in value.get("secondaryFiles") or []:
            if isinstance(sf, dict):
                sf_path = str(sf.get("path") or "")
                if not sf_path or sf_path != os.path.join(folder, str(sf.get("basename"))):
                    return False
        return True

    def visit(value: Any) -> None:
        if isinstance(value, list):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            if is_file(value) or is_directory(value):
                if value.get("path") and not consistent(value):
                    folder = os.path.join(stage_dir, uuid.uuid4().hex)
                    target = os.path.join(folder, str(value.get("basename")))
                    original = str(value["location"])
                    _stage_object(value, target, writable=False, inplace=False)
                    relocated = {original: target}
                    for sf in value.get("secondaryFiles") or []:
                        if isinstance(sf, dict) and sf.get("location"):
                            relocated[str(sf["location"])] = os.path.join(folder, str(sf.get("basename")))
                    _relocate_inputs(value, relocated)
            else:
                for item in value.values():
                    visit(item)

    visit(inputs)


def _stage_object(value: dict[str, Any], target: str, *, writable: bool, inplace: bool) -> None:
    location = str(value.get("location", ""))
    if location.startswith("_:") or (not location and ("contents" in value or "listing" in value)):
        _write_literal(value, target)
        return
    source = str(value.get("path") or uri_to_path(location))
    if os.path.abspath(source) == os.path.abspath(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target):
        if os.path.isdir(target) and not os.path.islink(target):
            shutil.rmtree(target)
        else:
            os.unlink(target)
    if writable and not inplace:
        if os.path.isdir(source):
            shutil.copytree(source, target, symlinks=False)
            os.chmod(target, 0o755)
        else:
            shutil.copyfile(source, target)
            os.chmod(target, 0o644)
    else:
        os.symlink(source, target)
    for sf in value.get("secondaryFiles") or []:
        if isinstance(sf, dict) and (is_file(sf) or is_directory(sf)):
            sf_name = str(sf.get("basename") or os.path.basename(uri_to_path(str(sf.get("location", "")))))
            _stage_object(
                sf, os.path.join(os.path.dirname(target), sf_name), writable=writable, inplace=inplace
            )


def _flatten(items: Any) -> list[Any]:
    if items is None:
        return []
    if isinstance(items, list):
        result: list[Any] = []
        for item in items:
            result.extend(_flatten(item))
        return result
    return [items]


def stage_initial_workdir(
    requirements: Requirements,
    inputs: dict[str, Any],
    *,
    outdir: str,
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
    cwl_version: str = "v1.2",
    host: HostPaths | None = None,
) -> list[str]:
    """Create the entries of ``InitialWorkDirRequirement`` in ``outdir``.

    Args:
        requirements: the effective requirements and hints.
        inputs: the validated input object; staged inputs get their ``path`` rewritten.
        outdir: the designated output directory (the tool's working directory).
        evaluator: evaluates ``listing``, ``entryname`` and ``entry`` expressions.
        runtime: the ``runtime`` object.
        cwl_version: the document's original version (non-string entries are
            JSON-serialised from v1.2 on).
        host: where absolute entry names go (a container path emulated on the host).

    Returns:
        The paths of the staged files and directories (the sources of the links).

    Raises:
        JobFailedError: an entry is malformed (e.g. an expression returned a bad value).
        UnsupportedRequirementError: an absolute ``entryname`` outside the output directory.
    """
    req = requirements.get("InitialWorkDirRequirement")
    if req is None:
        return []
    inplace = bool((requirements.get("InplaceUpdateRequirement") or {}).get("inplaceUpdate"))
    listing = req.get("listing")
    if has_expression(listing):
        listing = evaluator.evaluate(listing, inputs, runtime=runtime)
    entries: list[tuple[str | None, Any, bool]] = []
    for item in _flatten(listing):
        if has_expression(item):
            item = evaluator.evaluate(item, inputs, runtime=runtime)
        for element in _flatten(item):
            if isinstance(element, Mapping) and "entry" in element:
                entries.append(_dirent(element, inputs, evaluator, runtime, cwl_version))
            elif is_file(element) or is_directory(element):
                entries.append((None, element, False))
            elif element is not None:
                raise JobFailedError(
                    f"InitialWorkDirRequirement: expected a File, Directory or Dirent, got {element!r}"
                )
    relocated: dict[str, str] = {}
    named: dict[str, str] = {}  # target -> the entry name that claimed it

    def claim(target: str, name: str | None, explicit: bool) -> None:
        # Two entries for one path would silently keep the last one: a staging conflict
        # (as cwltool and Toil say), when an entryname of the document asked for that path.
        previous = named.get(target)
        if previous is not None and (explicit or previous.startswith("entryname ")):
            label = f"entryname {name!r}" if explicit else repr(name)
            where = os.path.relpath(target, outdir) if _inside(target, outdir) else target
            both = f"{label} is listed twice" if label == previous else f"{label} and {previous} are both"
            raise JobFailedError(f"InitialWorkDirRequirement: staging conflict: {both} for {where!r}")
        named.setdefault(target, f"entryname {name!r}" if explicit else repr(name))

    for name, entry, writable in entries:
        if entry is None:
            continue
        if isinstance(entry, str):
            target = _target(outdir, name, host)
            claim(target, name, True)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as handle:
                handle.write(entry)
            continue
        for obj in _flatten(entry):
            if not isinstance(obj, dict) or not (is_file(obj) or is_directory(obj)):
                raise JobFailedError(f"InitialWorkDirRequirement: cannot stage {obj!r}")
            obj = dict(obj)
            if "location" not in obj and obj.get("path"):
                obj["location"] = path_to_uri(str(obj["path"]))
            if "basename" not in obj or not obj["basename"]:
                fill_object(obj, base_dir=outdir, check=False)
            target = _target(outdir, name or str(obj.get("basename")), host)
            # (an entryname over a list of Files names no single one of them)
            claim(target, name or str(obj.get("basename")), name is not None and not isinstance(entry, list))
            original = str(obj.get("location", ""))
            _stage_object(obj, target, writable=writable, inplace=inplace)
            if original and not original.startswith("_:"):
                relocated[original] = target
            for sf in obj.get("secondaryFiles") or []:
                sf_location = str(sf.get("location", "")) if isinstance(sf, dict) else ""
                if sf_location and not sf_location.startswith("_:"):
                    sf_name = str(sf.get("basename") or os.path.basename(uri_to_path(sf_location)))
                    relocated[sf_location] = os.path.join(os.path.dirname(target), sf_name)
    if relocated:
        _relocate_inputs(inputs, relocated)
    return [uri_to_path(location) for location in relocated if location.startswith("file:")]


def _dirent(
    element: Mapping[str, Any],
    inputs: dict[str, Any],
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
    cwl_version: str,
) -> tuple[str | None, Any, bool]:
    name = element.get("entryname")
    if has_expression(name):
        name = evaluator.evaluate(name, inputs, runtime=runtime)
    raw = element.get("entry")
    writable = bool(element.get("writable"))
    if has_expression(raw):
        value = evaluator.evaluate(raw, inputs, runtime=runtime, strip_whitespace=False)
        # A whole-string expression yields a value; interpolation always yields a string.
        if isinstance(value, str) or value is None:
            entry: Any = value
        elif (is_file(value) or is_directory(value)) or (
            isinstance(value, list) and value and all(is_file(v) or is_directory(v) for v in value)
        ):
            entry = value
        elif cwl_version in ("v1.0", "v1.1") and not isinstance(value, list | dict):
            entry = str(value)
        else:
            entry = json.dumps(value)
    else:
        entry = str(raw) if raw is not None else None
    if isinstance(entry, str) and name is None:
        raise JobFailedError("InitialWorkDirRequirement: an entry with literal contents needs an 'entryname'")
    return (str(name) if name is not None else None, entry, writable)


def _inside(path: str, root: str) -> bool:
    root = os.path.normpath(root)
    return path == root or path.startswith(root + os.sep)


def _target(outdir: str, name: str | None, host: HostPaths | None = None) -> str:
    if not name:
        raise JobFailedError("InitialWorkDirRequirement: entry without a name")
    mapped = host.target(name) if host is not None else None
    if mapped is not None:
        return mapped
    target = os.path.normpath(os.path.join(outdir, name))
    root = os.path.normpath(outdir)
    if target != root and not target.startswith(root + os.sep):
        raise UnsupportedRequirementError(
            f"InitialWorkDirRequirement: entryname {name!r} is outside the output directory; "
            "this needs a container"
        )
    return target


def _relocate_inputs(inputs: Any, relocated: Mapping[str, str]) -> None:
    prefixes = sorted(relocated.items(), key=lambda kv: -len(kv[0]))

    def visit(value: dict[str, Any]) -> None:
        location = str(value.get("location", ""))
        for source, target in prefixes:
            if location == source or location.startswith(source.rstrip("/") + "/"):
                suffix = location[len(source) :]
                value["path"] = target + uri_to_path(suffix) if suffix else target
                value["dirname"] = os.path.dirname(value["path"])
                return

    walk_files(inputs, visit)
