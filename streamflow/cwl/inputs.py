"""Validating and completing the input object of one process invocation."""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import Any

from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.cwl.files import FileProblem, fill_object, read_contents, secondary_files
from streamflow.cwl.formats import check_format, document_namespaces, document_schemas
from streamflow.cwl.types import FileSlot, SchemaIndex, TypeMismatch, check_value
from streamflow.cwl.utils import Requirements, plain, shortname, uri_to_path
from streamflow.errors import InputValidationError
from streamflow.secrets import conceal, secret_inputs

__all__ = ["fill_and_validate_inputs", "listing_default"]


def listing_default(requirements: Requirements, spec: Mapping[str, Any]) -> str:
    """Return the effective ``loadListing`` of a parameter (default ``no_listing`` in v1.2)."""
    value = spec.get("loadListing")
    if value is None:
        req = requirements.get("LoadListingRequirement")
        value = (req or {}).get("loadListing")
    return str(value) if value else "no_listing"


def fill_and_validate_inputs(
    process: Any,
    job_order: dict[str, Any],
    *,
    requirements: list[Any],
    base_dir: str,
    check_files: bool = True,
    hints: Sequence[Any] = (),
    cwl_version: str = "v1.2",
    namespaces: Mapping[str, str] | None = None,
    discover_secondary_files: bool = True,
) -> dict[str, Any]:
    """Apply defaults, check types and complete File/Directory values of a job order.

    Files and directories get ``location`` (``file://`` URI), ``path``, ``basename``,
    ``dirname``, ``nameroot``, ``nameext`` and ``size``; directories get a ``listing`` per
    ``loadListing``; secondary files are discovered; ``loadContents`` is honoured and
    declared formats are checked.

    Args:
        process: the cwl_utils process.
        job_order: input values by short name (not modified).
        requirements: the effective requirements of the process.
        base_dir: directory that relative File/Directory locations are resolved against.
        check_files: require input files to exist locally.
        hints: the effective hints (for ``LoadListingRequirement`` given as a hint).
        cwl_version: the document's original ``cwlVersion`` (expression escaping rules).
        namespaces: ``$namespaces`` of the document, to expand format prefixes.
        discover_secondary_files: look for secondary files next to their primary file (the
            inputs of the top-level process); otherwise (a workflow step's job) the value
            must already carry every required secondary file, except for File values that
            come from the parameter's own ``default``.

    Returns:
        A new input object with every declared input (null when absent and optional).

    Raises:
        InputValidationError: a value does not match its type, or a file is missing; the
            message names the input and what was expected, e.g.
            ``input 'threads': expected int, got string 'abc'``.
    """
    params, reqs, index, evaluator = _context(process, requirements, hints, cwl_version)
    result: dict[str, Any] = {}
    slots: list[FileSlot] = []
    defaulted: set[int] = set()
    for param in params:
        name = shortname(str(param["id"]))
        value = job_order.get(name)
        from_default = value is None and param.get("default") is not None
        if from_default:
            value = copy.deepcopy(param["default"])
        try:
            checked, found = check_value(value, param.get("type"), name, index, param)
        except TypeMismatch as exc:
            raise InputValidationError(f"input '{exc.where}': {exc.reason}") from None
        result[name] = checked
        if from_default:
            defaulted.update(id(slot) for slot in found)
        slots.extend(found)
    for slot in slots:
        listing = listing_default(reqs, slot.spec)
        if listing != "no_listing" and slot.value.get("class") == "Directory":
            _forget_listing(slot.value)
        try:
            fill_object(slot.value, base_dir=base_dir, check=check_files, listing=listing)
        except FileProblem as exc:
            raise InputValidationError(f"input '{slot.where}': {exc}") from None
    all_namespaces = {**document_namespaces(process), **(namespaces or {})}
    schemas = document_schemas(process)
    for slot in slots:
        discover = discover_secondary_files or id(slot) in defaulted
        _complete(slot, evaluator, result, reqs, check_files, all_namespaces, schemas, discover)
    hidden = secret_inputs(hints, requirements)
    # Secret inputs (cwltool:Secrets) travel as placeholders; the worker reveals them to the command.
    return conceal(result, hidden) if hidden else result


_Context = tuple[list[Mapping[str, Any]], Requirements, SchemaIndex, ExpressionEvaluator]
#: id(process), id(requirements), id(hints), version -> (process, requirements, hints, context).
_contexts: dict[tuple[int, int, int, str], tuple[Any, Any, Any, _Context]] = {}


def _context(process: Any, requirements: Sequence[Any], hints: Sequence[Any], cwl_version: str) -> _Context:
    """The parameters, requirements, named types and expression evaluator of a process: the same
    for each of its jobs, so worked out once per process (the objects are kept with them, so that
    their ids stay theirs; callers only read them)."""
    key = (id(process), id(requirements), id(hints), cwl_version)
    hit = _contexts.get(key)
    if hit is not None and hit[0] is process and hit[1] is requirements and hit[2] is hints:
        return hit[3]
    reqs = Requirements(requirements, hints)
    params: list[Mapping[str, Any]] = list(plain(process).get("inputs") or [])
    context = (params, reqs, SchemaIndex(reqs, params), ExpressionEvaluator(reqs.as_list(), cwl_version))
    if len(_contexts) >= 256:
        _contexts.clear()
    _contexts[key] = (process, requirements, hints, context)
    return context


def _forget_listing(value: dict[str, Any]) -> None:
    """Drop the listing of a Directory that exists on disk, so it is loaded afresh.

    A listing that travelled with the value from an upstream step is a snapshot: a step in
    between may have changed the directory (``InplaceUpdateRequirement``), and the depth the
    consuming tool asks for (``loadListing``) may differ from the producer's.
    """
    location = str(value.get("location") or "")
    path = str(value.get("path") or (uri_to_path(location) if location.startswith("file:") else ""))
    if "listing" in value and path and os.path.isdir(path):
        del value["listing"]


def _load_contents(spec: Mapping[str, Any]) -> bool:
    """Whether a parameter asks for its File's contents.

    ``inputBinding.loadContents`` is deprecated since v1.1 in favour of the parameter's own
    ``loadContents``, but still valid in v1.2 documents (v1.0 ones are upgraded).
    """
    binding = spec.get("inputBinding")
    return bool(spec.get("loadContents") or (isinstance(binding, Mapping) and binding.get("loadContents")))


def _complete(
    slot: FileSlot,
    evaluator: ExpressionEvaluator,
    inputs: dict[str, Any],
    reqs: Requirements,
    check_files: bool,
    namespaces: Mapping[str, str],
    schemas: list[str],
    discover: bool = True,
) -> None:
    value, spec = slot.value, slot.spec
    try:
        if value.get("class") == "File" and spec.get("secondaryFiles"):
            value["secondaryFiles"] = secondary_files(
                value,
                list(spec["secondaryFiles"]),
                evaluator=evaluator,
                inputs=inputs,
                runtime=None,
                required_default=True,
                check=check_files,
                discover=discover,
            )
            for sf in value["secondaryFiles"]:
                fill_object(sf, base_dir="", check=check_files, listing=listing_default(reqs, spec))
        if value.get("class") == "File" and _load_contents(spec) and check_files:
            value["contents"] = read_contents(value)
    except FileProblem as exc:
        raise InputValidationError(f"input '{slot.where}': {exc}") from None
    declared = spec.get("format")
    if declared is not None and value.get("class") == "File" and value.get("format") is not None:
        if has_expression(declared) or (
            isinstance(declared, list) and any(has_expression(d) for d in declared)
        ):
            declared = [
                evaluator.evaluate(d, inputs, self_=value)
                for d in (declared if isinstance(declared, list) else [declared])
            ]
        problem = check_format(str(value["format"]), declared, namespaces, schemas)
        if problem:
            raise InputValidationError(f"input '{slot.where}': {problem}")
