"""Collecting the output object of a CommandLineTool or ExpressionTool."""

from __future__ import annotations

import glob as globmod
import hashlib
import json
import os
import shutil
from collections.abc import Collection, Mapping
from typing import Any

from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.cwl.files import CONTENTS_LIMIT, FileProblem, fill_object, list_directory, secondary_files
from streamflow.cwl.staging import walk_files
from streamflow.cwl.types import SchemaIndex, TypeMismatch, check_value, decidable
from streamflow.cwl.utils import Requirements, checksum, is_file, path_to_uri, shortname, uri_to_path
from streamflow.errors import JobFailedError

__all__ = ["collect_outputs", "finalize_files", "validate_workflow_outputs"]


def finalize_files(value: Any, *, base_dir: str, default_listing: str = "deep_listing") -> None:
    """Complete every File/Directory of an output value in place: location, names, size, checksum.

    Args:
        value: an output value (modified in place).
        base_dir: directory that relative locations are resolved against (the output directory).
        default_listing: listing depth for Directory objects that have no ``listing``.

    Raises:
        JobFailedError: an output file does not exist.
    """

    def visit(obj: dict[str, Any]) -> None:
        _apply_basename(obj, base_dir)
        try:
            fill_object(obj, base_dir=base_dir, check=True, listing=default_listing)
        except FileProblem as exc:
            raise JobFailedError(f"output {exc}", retryable=False) from None
        if is_file(obj):
            path = obj.get("path")
            if path and os.path.isfile(str(path)):
                obj["checksum"] = checksum(str(path))
                obj["size"] = os.path.getsize(str(path))
            elif "contents" in obj:
                import hashlib

                data = str(obj["contents"]).encode()
                obj["checksum"] = "sha1$" + hashlib.sha1(data).hexdigest()
                obj["size"] = len(data)

    walk_files(value, visit)


def _apply_basename(obj: dict[str, Any], outdir: str) -> None:
    """Give an output file inside ``outdir`` its declared ``basename`` on disk (a copy next to it)."""
    name = obj.get("basename")
    location = obj.get("location")
    path = obj.get("path") or (
        uri_to_path(str(location)) if isinstance(location, str) and location.startswith("file:") else None
    )
    if not name or not path or os.path.basename(str(path).rstrip("/")) == name or "/" in str(name):
        return
    path = str(path)
    if not _inside(os.path.normpath(path), os.path.normpath(outdir)) or not os.path.exists(path):
        return
    target = os.path.join(os.path.dirname(path), str(name))
    if not os.path.exists(target):
        if os.path.isdir(path):
            shutil.copytree(path, target, symlinks=True)
        else:
            shutil.copy2(path, target)
    obj["location"] = path_to_uri(target)
    obj.pop("path", None)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _glob(outdir: str, patterns: list[str], allowed: Collection[str]) -> list[str]:
    root = os.path.normpath(outdir)
    real_root: str | None = None  # only needed once a match is (or goes through) a link
    found: list[str] = []
    for pattern in patterns:
        if pattern in (".", "./"):
            matches = [outdir]
        else:
            full = pattern if os.path.isabs(pattern) else os.path.join(outdir, pattern)
            matches = sorted(globmod.glob(full))
        for match in matches:
            normal = os.path.normpath(match)
            if not _inside(normal, root):
                raise JobFailedError(f"output glob {pattern!r} matched {match}, outside the output directory")
            if not _plain_below(match, normal, root):
                if real_root is None:
                    real_root = os.path.realpath(outdir)
                real = os.path.realpath(match)
                if not _inside(real, real_root) and not any(_inside(real, a) for a in allowed):
                    raise JobFailedError(
                        f"output {match} is a symbolic link to {real}, outside the output directory and the inputs"
                    )
            if match not in found:
                found.append(match)
    return found


def _plain_below(match: str, normal: str, root: str) -> bool:
    """Whether ``match`` (``normal`` once normalised, inside ``root``) names what lies at that
    place below ``root``: no ``..`` and no symbolic link on the way (one ``lstat`` per level
    below ``root``, instead of a ``realpath`` of the whole path). Otherwise the caller resolves it."""
    if normal == root:
        return True
    rel = normal[len(root.rstrip(os.sep)) + 1:]
    if ".." in match.split(os.sep):
        return False
    current = root
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            return False
    return True


def _checksum_and_contents(path: str, load_contents: bool) -> tuple[str, str | None]:
    """The CWL checksum of a file and, for ``loadContents``, its text: one read of a small file."""
    if not load_contents:
        return checksum(path), None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise FileProblem(f"cannot read {path} for loadContents: {exc}") from exc
    try:
        data = bytearray()
        while len(data) <= CONTENTS_LIMIT and (chunk := os.read(fd, CONTENTS_LIMIT + 1 - len(data))):
            data += chunk
    except OSError as exc:
        raise FileProblem(f"cannot read {path} for loadContents: {exc}") from exc
    finally:
        os.close(fd)
    if len(data) > CONTENTS_LIMIT:
        raise FileProblem(f"loadContents: {path} is larger than the 64 KiB limit")
    return "sha1$" + hashlib.sha1(data).hexdigest(), data.decode("utf-8", errors="replace")


def _as_object(path: str, listing: str) -> dict[str, Any]:
    if os.path.isdir(path):
        obj: dict[str, Any] = {"class": "Directory", "location": path_to_uri(path)}
        fill_object(obj, base_dir=path, check=False)
        if listing in ("shallow_listing", "deep_listing"):
            obj["listing"] = list_directory(path, deep=listing == "deep_listing", with_checksum=True)
        return obj
    obj = {"class": "File", "location": path_to_uri(path)}
    fill_object(obj, base_dir=os.path.dirname(path), check=False)
    return obj


class _Collector:
    def __init__(
        self,
        outdir: str,
        inputs: Mapping[str, Any],
        evaluator: ExpressionEvaluator,
        runtime: Mapping[str, Any],
        index: SchemaIndex,
        streams: Mapping[str, str],
        allowed: Collection[str],
    ) -> None:
        self.allowed = allowed
        self.outdir = outdir
        self.inputs = inputs
        self.evaluator = evaluator
        self.runtime = runtime
        self.index = index
        self.streams = streams

    def _eval(self, expr: Any, self_: Any = None) -> Any:
        return self.evaluator.evaluate(expr, self.inputs, self_=self_, runtime=self.runtime)

    def collect(self, spec: Mapping[str, Any], where: str) -> Any:
        t = self.index.resolve(spec.get("type"))
        binding = spec.get("outputBinding")
        if t in ("stdout", "stderr"):
            binding = {"glob": self.streams[str(t)]}
        if not isinstance(binding, Mapping):
            if isinstance(t, Mapping) and t.get("type") == "record":
                record: dict[str, Any] = {}
                for f in t.get("fields") or []:
                    name = shortname(str(f.get("name")))
                    record[name] = self.collect(f, f"{where}.{name}")
                    self.secondary_and_format(record[name], f, f"{where}.{name}")
                return record
            if isinstance(t, list):
                for alt in t:
                    resolved = self.index.resolve(alt)
                    if isinstance(resolved, Mapping) and resolved.get("type") == "record":
                        return self.collect({**spec, "type": resolved}, where)
            return None
        listing = str(spec.get("loadListing") or binding.get("loadListing") or "deep_listing")
        result: Any = []
        if binding.get("glob") is not None:
            raw = binding["glob"]
            patterns: list[str] = []
            for item in raw if isinstance(raw, list) else [raw]:
                evaluated = self._eval(item) if has_expression(item) else item
                for p in evaluated if isinstance(evaluated, list) else [evaluated]:
                    if p is None:
                        continue
                    if not isinstance(p, str):
                        raise JobFailedError(f"output '{where}': glob must evaluate to strings, got {p!r}")
                    patterns.append(p)
            result = [_as_object(p, listing) for p in _glob(self.outdir, patterns, self.allowed)]
            load_contents = spec.get("loadContents") or binding.get("loadContents")
            for obj in result:
                if is_file(obj):
                    try:
                        obj["checksum"], contents = _checksum_and_contents(str(obj["path"]), bool(load_contents))
                    except FileProblem as exc:
                        raise JobFailedError(f"output '{where}': {exc}") from None
                    if contents is not None:
                        obj["contents"] = contents
        if binding.get("outputEval") is not None:
            result = self._eval(binding["outputEval"], result)
        elif isinstance(result, list) and not _is_array_type(t, self.index):
            if len(result) == 1:
                result = result[0]
            elif not result:
                result = None
            elif _accepts(t, "File", self.index) or _accepts(t, "Directory", self.index):
                raise JobFailedError(f"output '{where}': glob matched {len(result)} files, expected one")
        return result

    def secondary_and_format(self, value: Any, spec: Mapping[str, Any], where: str) -> None:
        specs = spec.get("secondaryFiles")
        fmt = spec.get("format")
        if not specs and fmt is None:
            return
        for obj in value if isinstance(value, list) else [value]:
            if not is_file(obj):
                continue
            if specs:
                try:
                    obj["secondaryFiles"] = secondary_files(
                        obj,
                        list(specs),
                        evaluator=self.evaluator,
                        inputs=self.inputs,
                        runtime=self.runtime,
                        required_default=False,
                    )
                except FileProblem as exc:
                    raise JobFailedError(f"output '{where}': {exc}") from None
            if fmt is not None:
                obj["format"] = self._eval(fmt, obj) if has_expression(fmt) else fmt


def _is_array_type(t: Any, index: SchemaIndex) -> bool:
    t = index.resolve(t)
    if isinstance(t, list):
        return any(_is_array_type(x, index) for x in t)
    return isinstance(t, Mapping) and t.get("type") == "array"


def _accepts(t: Any, name: str, index: SchemaIndex) -> bool:
    t = index.resolve(t)
    if isinstance(t, list):
        return any(_accepts(x, name, index) for x in t)
    return t == name or (name == "File" and t in ("stdout", "stderr"))


def _check(value: Any, spec: Mapping[str, Any], where: str, index: SchemaIndex) -> Any:
    try:
        checked, _ = check_value(value, spec.get("type"), where, index, spec, null_any=True)
    except TypeMismatch as exc:
        raise JobFailedError(f"output '{exc.where}': {exc.reason}", retryable=False) from None
    return checked


def collect_outputs(
    process_view: Mapping[str, Any],
    inputs: Mapping[str, Any],
    *,
    outdir: str,
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
    index: SchemaIndex,
    streams: Mapping[str, str],
    allowed_paths: Collection[str] = (),
) -> dict[str, Any]:
    """Collect the outputs of a finished CommandLineTool.

    ``cwl.output.json`` in the output directory, when present, is the output object;
    otherwise each output is collected with its ``outputBinding`` (glob, loadContents,
    outputEval with ``runtime.exitCode``), secondary files and format. Values are checked
    against the declared types and every File gets ``checksum`` and ``size``.

    Args:
        process_view: the plain view of the tool.
        inputs: the input object the tool ran with.
        outdir: the output directory.
        evaluator: evaluates glob, outputEval, format and secondary-file expressions.
        runtime: the ``runtime`` object, including ``exitCode``.
        index: the named types in scope.
        streams: the stdout/stderr file names (for ``stdout``/``stderr`` typed outputs).
        allowed_paths: real paths of the inputs; outputs may be symbolic links into them
            (staged inputs), but not elsewhere outside the output directory.

    Returns:
        The output object.

    Raises:
        JobFailedError: an output is missing, has the wrong type, or cannot be read.
    """
    params: list[Mapping[str, Any]] = list(process_view.get("outputs") or [])
    custom = os.path.join(outdir, "cwl.output.json")
    result: dict[str, Any] = {}
    if os.path.isfile(custom):
        try:
            with open(custom, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise JobFailedError(f"cannot read {custom}: {exc}") from exc
        if not isinstance(data, dict):
            raise JobFailedError(f"{custom} must hold a JSON object")
        _resolve_relative(data, outdir)
        finalize_files(data, base_dir=outdir)
        for param in params:
            name = shortname(str(param["id"]))
            result[name] = _check(data.get(name), param, name, index)
        finalize_files(result, base_dir=outdir)
        return result
    collector = _Collector(outdir, inputs, evaluator, runtime, index, streams, allowed_paths)
    for param in params:
        name = shortname(str(param["id"]))
        value = collector.collect(param, name)
        collector.secondary_and_format(value, param, name)
        finalize_files(value, base_dir=outdir)
        result[name] = _check(value, param, name, index)
    return result


def _resolve_relative(value: Any, outdir: str) -> None:
    def visit(obj: dict[str, Any]) -> None:
        location = obj.get("location")
        if location is None and obj.get("path"):
            location = str(obj.pop("path"))
        if isinstance(location, str) and "://" not in location and not location.startswith("_:"):
            obj["location"] = path_to_uri(os.path.join(outdir, location))
        elif isinstance(location, str) and location.startswith("file://"):
            obj["location"] = path_to_uri(uri_to_path(location))
        obj.pop("path", None)

    walk_files(value, visit)


def validate_workflow_outputs(outputs: Mapping[str, Any], output_types: Mapping[str, Any]) -> str | None:
    """Check a workflow's final output object against its declared output types.

    Conditional steps and ``pickValue`` decide at run time what a workflow output holds,
    so only the final object shows whether, say, ``all_non_null`` produced a list where a
    ``string`` is declared, or a skipped step left ``null`` where a value is required.
    The translator records the types with ``SchemaDefRequirement`` names replaced by their
    definitions (:func:`streamflow.cwl.types.inline_named`); a type that still names
    something (unresolvable, or recursive) cannot be decided here and is not checked: a
    check that fails a finished run must be right.

    Args:
        outputs: output name -> value.
        output_types: output name -> declared (plain) CWL type.

    Returns:
        None when every output matches, else what is wrong (naming the output).
    """
    index = SchemaIndex(Requirements([], []), [{"type": t} for t in output_types.values()])
    for name, declared in output_types.items():
        if not decidable(declared):
            continue
        try:
            check_value(outputs.get(name), declared, name, index, {}, null_any=True)
        except TypeMismatch as exc:
            if exc.reason.startswith("unknown type"):
                continue
            return f"workflow output '{exc.where}': {exc.reason}"
    return None
