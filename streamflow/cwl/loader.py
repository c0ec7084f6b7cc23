"""Loading CWL documents and job files.

Documents of every supported version (v1.0, v1.1, v1.2) are validated against their own
version's schema, then upgraded in memory to v1.2 with cwl-upgrader, so the rest of StreamFlow
only ever sees :mod:`cwl_utils.parser.cwl_v1_2` classes. Loaded documents are cached by URI
and modification time: a process referenced by many steps is parsed once.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import cwl_utils.parser
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from schema_salad.exceptions import ValidationException
from schema_salad.runtime import LoadingOptions
from schema_salad.utils import yaml_no_ts

from streamflow.cwl.utils import has_scheme, is_directory, is_file, path_to_uri, plain, uri_to_path
from streamflow.errors import InputValidationError, UnsupportedRequirementError, WorkflowDefinitionError

__all__ = ["SUPPORTED_VERSIONS", "LoadedDocument", "load_document", "load_job", "split_document"]

SUPPORTED_VERSIONS = ("v1.0", "v1.1", "v1.2")
"""The ``cwlVersion`` values this loader accepts."""

_PROCESS_CLASSES = frozenset({"CommandLineTool", "ExpressionTool", "Workflow", "Operation"})
_cache: dict[str, tuple[float, LoadedDocument]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class LoadedDocument:
    """A parsed CWL process, always as cwl_utils v1.2 objects.

    Attributes:
        process: the cwl_utils v1.2 object (CommandLineTool, ExpressionTool, Workflow or Operation).
        uri: ``file://`` URI of the process (with ``#fragment`` if a ``$graph`` entry was chosen).
        cwl_version: the document's original ``cwlVersion``.
        namespaces: the document's ``$namespaces`` (prefix -> URI), for format checking.
        schemas: the document's ``$schemas``.
    """

    process: Any
    uri: str
    cwl_version: str
    namespaces: dict[str, str] = field(default_factory=dict)
    schemas: list[str] = field(default_factory=list)


def split_document(path: str) -> tuple[str, str | None]:
    """Split a path or URI into an absolute local path and an optional fragment.

    A ``#`` of a local path that exists is part of the file's name, not a fragment.
    """
    fragment: str | None = None
    if path.startswith("file://"):
        parts = urlsplit(path)
        local = uri_to_path(path.split("#", 1)[0])
        fragment = parts.fragment or None
    else:
        local = path
        if "#" in path and not os.path.exists(path):
            local, fragment = path.rsplit("#", 1)
    return os.path.abspath(local), fragment


def _read_yaml(path: str) -> Any:
    # The loader cwl_utils itself uses (round trip, quotes kept, no timestamps): the document
    # read here is handed to the v1.2 parser as is, so the file is parsed once.
    yaml = yaml_no_ts()
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle)
    except FileNotFoundError as exc:
        raise WorkflowDefinitionError(f"{path}: no such CWL document") from exc
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
        raise WorkflowDefinitionError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkflowDefinitionError(f"{path}: cannot read CWL document: {exc}") from exc


def _line_of(node: Any) -> str:
    lc = getattr(node, "lc", None)
    return f":{lc.line + 1}" if lc is not None and lc.line is not None else ""


def _select(doc: Any, path: str, fragment: str | None) -> Any:
    """Return the process object chosen from a (possibly ``$graph``) document."""
    if not isinstance(doc, Mapping):
        raise WorkflowDefinitionError(f"{path}: expected a CWL process object (a mapping) at top level")
    if "$graph" not in doc:
        return doc
    graph = doc["$graph"]
    wanted = fragment or "main"
    for entry in graph:
        if isinstance(entry, Mapping) and str(entry.get("id", "")).lstrip("#") == wanted:
            return entry
    if fragment is None and len(graph) == 1:
        return graph[0]
    ids = ", ".join("#" + str(e.get("id", "?")).lstrip("#") for e in graph if isinstance(e, Mapping))
    raise WorkflowDefinitionError(f"{path}: $graph has no entry #{wanted}; expected one of {ids}")


def _inline_imports(node: Any, base_dir: str, depth: int = 0) -> Any:
    """Replace ``$import``/``$include`` directives by the referenced content (old versions only)."""
    if depth > 50:
        raise WorkflowDefinitionError(f"{base_dir}: $import nesting too deep (cycle?)")
    if isinstance(node, Mapping):
        if len(node) == 1 and "$import" in node:
            target = os.path.join(base_dir, uri_to_path(str(node["$import"])))
            return _inline_imports(_read_yaml(target), os.path.dirname(target), depth + 1)
        if len(node) == 1 and "$include" in node:
            target = os.path.join(base_dir, uri_to_path(str(node["$include"])))
            try:
                with open(target, encoding="utf-8") as handle:
                    return handle.read()
            except OSError as exc:
                raise WorkflowDefinitionError(f"{target}: cannot $include: {exc}") from exc
        for key in list(node):
            node[key] = _inline_imports(node[key], base_dir, depth)  # type: ignore[index]
        return node
    if isinstance(node, list):
        return [_inline_imports(item, base_dir, depth) for item in node]
    return node


_RUN_MARK = "#__sf_run__"


def _hide_run_references(node: Any) -> None:
    """Mark ``run: file.cwl`` references so cwl-upgrader leaves the referenced files alone.

    The upgrader would otherwise load, upgrade and write every referenced document itself
    (and needs source-line file names to do so); the translator loads each ``run`` through
    :func:`load_document`, which validates and upgrades it against its own ``cwlVersion``
    (a v1.0 workflow may run v1.1 or v1.2 tools).
    """
    if isinstance(node, Mapping):
        run = node.get("run")
        if isinstance(run, str) and "#" not in run:
            node["run"] = run + _RUN_MARK  # type: ignore[index]
        for value in node.values():
            _hide_run_references(value)
    elif isinstance(node, list):
        for item in node:
            _hide_run_references(item)


def _restore_run_references(node: Any) -> None:
    if isinstance(node, Mapping):
        run = node.get("run")
        if isinstance(run, str) and run.endswith(_RUN_MARK):
            node["run"] = run[: -len(_RUN_MARK)]  # type: ignore[index]
        for value in node.values():
            _restore_run_references(value)
    elif isinstance(node, list):
        for item in node:
            _restore_run_references(item)


_session: Any = None
_fetcher_class: Any = None


def _fetcher() -> Any:
    """A schema-salad fetcher for one document, sharing this process's HTTP session.

    Each ``LoadingOptions`` without a fetcher builds its own HTTP session with an on-disk
    cache (importing cachecontrol and filelock); CWL documents are local files. The memory
    cache is per document, so a long-lived process never serves an edited file stale.

    Loading never touches the network unless a document imports a remote URL: the parsers'
    link check of a reference (a hint's class in another namespace, a ``format`` IRI...)
    would send an HTTP ``HEAD`` to the namespace's host; remote references are taken as
    existing instead (only reading one, ``$import`` or ``run`` of a URL, goes out).
    """
    global _session, _fetcher_class
    import requests
    from schema_salad.fetcher import DefaultFetcher

    if _fetcher_class is None:

        class _OfflineLinkCheck(DefaultFetcher):
            def check_exists(self, url: str) -> bool:
                if urlsplit(url).scheme in ("http", "https"):
                    return True
                return bool(super().check_exists(url))

        _fetcher_class = _OfflineLinkCheck
    if _session is None:
        _session = requests.Session()
    return _fetcher_class({}, _session)


def _document_uri(path: str) -> str:
    """The ``file://`` URI the parsers get for a local document.

    Every character but ``/`` is percent-encoded: the parsers read a ``+`` left as it is as a
    space, and ``#``, ``%``, spaces and non-ASCII letters must not change the path either.
    """
    return Path(os.path.abspath(path)).as_uri()


def _load_v12(doc: Any, entry: Any, path: str, version: str) -> Any:
    """Parse an already read v1.2 document (the chosen ``$graph`` entry, if any)."""
    import cwl_utils.parser.cwl_v1_2 as v12

    real = Path(path).resolve()
    uri = real.as_uri()
    options = LoadingOptions(fetcher=_fetcher(), fileuri=uri, baseuri=real.parent.as_uri())
    target = doc
    if "$graph" in doc:
        target = entry
        target["cwlVersion"] = version
    return v12.load_document_by_yaml(target, uri, options)


def _upgrade(doc: Any, path: str, fragment: str | None, version: str) -> Any:
    """Validate ``doc`` against its own version, then parse it upgraded to v1.2."""
    uri = _document_uri(path)
    try:
        cwl_utils.parser.load_document_by_uri(uri + (f"#{fragment}" if fragment else ""),
                                              LoadingOptions(fetcher=_fetcher(), fileuri=uri))
    except ValidationException as exc:
        raise WorkflowDefinitionError(f"{path}: not a valid CWL {version} document:\n{exc}") from exc
    from cwlupgrader.main import upgrade_document

    doc = _inline_imports(copy.deepcopy(doc), os.path.dirname(path))
    _hide_run_references(doc)
    with tempfile.TemporaryDirectory(prefix="sf-cwl-upgrade-") as scratch:
        upgraded = upgrade_document(doc, scratch, "v1.2")
    if upgraded is None:
        raise WorkflowDefinitionError(f"{path}: cannot upgrade cwlVersion {version} to v1.2")
    _restore_run_references(upgraded)
    options = LoadingOptions(fetcher=_fetcher(), fileuri=uri, baseuri=uri)
    return cwl_utils.parser.load_document_by_yaml(upgraded, uri, options, fragment)


def load_document(path: str) -> LoadedDocument:
    """Load a CWL process document, upgrading it to v1.2 in memory if needed.

    Handles ``$graph`` documents (the ``#fragment`` of ``path``, else ``#main``, else the only
    entry), ``$import``/``$include``, packed documents and ``SchemaDefRequirement`` types.
    Results are cached by URI and modification time.

    Args:
        path: a local path or ``file://`` URI, optionally with a ``#fragment``.

    Returns:
        The loaded document.

    Raises:
        WorkflowDefinitionError: the file is missing, not YAML, or not a valid CWL document;
            the message names the file, the line when known and what was expected.
        UnsupportedRequirementError: the document's class or version is not supported.
    """
    local, fragment = split_document(path)
    key = local + ("#" + fragment if fragment else "")
    try:
        mtime = os.stat(local).st_mtime
    except OSError as exc:
        raise WorkflowDefinitionError(f"{local}: no such CWL document") from exc
    cached = _cache.get(key)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    loaded = _load_uncached(local, fragment)
    with _cache_lock:
        _cache[key] = (mtime, loaded)
    return loaded


def _load_uncached(path: str, fragment: str | None) -> LoadedDocument:
    doc = _read_yaml(path)
    if not isinstance(doc, Mapping):
        raise WorkflowDefinitionError(f"{path}: expected a CWL process object (a mapping) at top level")
    version = doc.get("cwlVersion")
    if version is None:
        raise WorkflowDefinitionError(
            f"{path}: missing 'cwlVersion' (expected one of {', '.join(SUPPORTED_VERSIONS)})"
        )
    version = str(version)
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedRequirementError(
            f"{path}: unsupported cwlVersion {version!r} (expected one of {', '.join(SUPPORTED_VERSIONS)})"
        )
    entry = _select(doc, path, fragment)
    cls = entry.get("class") if isinstance(entry, Mapping) else None
    if cls is None and isinstance(entry, Mapping) and "$import" in entry:
        cls = "CommandLineTool"  # resolved by the parser
    if cls not in _PROCESS_CLASSES:
        raise UnsupportedRequirementError(
            f"{path}{_line_of(entry)}: unsupported process class {cls!r} "
            f"(expected one of {', '.join(sorted(_PROCESS_CLASSES))})"
        )
    if fragment is None and "$graph" in doc:
        fragment = str(entry.get("id", "main")).lstrip("#")
    raw_ns = doc.get("$namespaces")
    raw_ns = dict(raw_ns) if isinstance(raw_ns, Mapping) else None
    raw_schemas = list(doc.get("$schemas") or [])
    try:
        if version == "v1.2":
            process = _load_v12(doc, entry, path, version)
        else:
            process = _upgrade(doc, path, fragment, version)
    except ValidationException as exc:
        raise WorkflowDefinitionError(f"{path}: not a valid CWL {version} document:\n{exc}") from exc
    except WorkflowDefinitionError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkflowDefinitionError(f"{path}: cannot load CWL document: {exc}") from exc
    if isinstance(process, list):
        raise WorkflowDefinitionError(f"{path}: expected a single process, got a list of {len(process)}")
    options = process.loadingOptions
    namespaces = {str(k): str(v) for k, v in (options.namespaces or {}).items()}
    if raw_ns is not None:
        namespaces.update({str(k): str(v) for k, v in raw_ns.items()})
    schemas = [str(s) for s in (options.schemas or raw_schemas)]
    _check_types(process, path)
    process_uri = str(process.id) if getattr(process, "id", None) else path_to_uri(path)
    return LoadedDocument(
        process=process, uri=process_uri, cwl_version=version, namespaces=namespaces, schemas=schemas
    )


_BUILTIN_TYPES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "string", "File", "Directory", "Any"}
    | {"stdin", "stdout", "stderr"}
)


def _check_types(process: Any, path: str) -> None:
    """Reject references to undefined types (the parser turns any unknown name into a URI)."""
    from streamflow.cwl.types import SchemaIndex
    from streamflow.cwl.utils import Requirements, shortname

    view = plain(process)
    params = [*(view.get("inputs") or []), *(view.get("outputs") or [])]
    index = SchemaIndex(Requirements(view.get("requirements") or [], view.get("hints") or []), params)

    def visit(t: Any, where: str) -> None:
        if isinstance(t, str):
            if t in _BUILTIN_TYPES or index.resolve(t) is not t:
                return
            name = shortname(t)
            line = _find_line(path, name)
            raise WorkflowDefinitionError(
                f"{path}{line}: {where}: unknown type {name!r} (expected a CWL type such as int, string, "
                "File, or a type defined in SchemaDefRequirement)"
            )
        if isinstance(t, list):
            for item in t:
                visit(item, where)
        elif isinstance(t, Mapping):
            kind = t.get("type")
            if kind == "array":
                visit(t.get("items"), where)
            elif kind == "record":
                for f in t.get("fields") or []:
                    visit(f.get("type"), f"{where}.{shortname(str(f.get('name')))}")
            elif kind not in ("enum",):
                visit(kind, where)

    for param in params:
        visit(param.get("type"), f"parameter '{shortname(str(param.get('id')))}'")


def _find_line(path: str, word: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if word in text:
                    return f":{number}"
    except OSError:
        pass
    return ""


def _absolutise(value: Any, base_dir: str) -> Any:
    """Make File/Directory ``location``/``path`` absolute relative to ``base_dir``, recursively."""
    if isinstance(value, list):
        return [_absolutise(v, base_dir) for v in value]
    if not isinstance(value, Mapping):
        return value
    result = {str(k): _absolutise(v, base_dir) for k, v in value.items()}
    if is_file(result) or is_directory(result):
        location = result.get("location")
        if location is None and result.get("path") is not None:
            location = path_to_uri(os.path.join(base_dir, str(result.pop("path"))))
        if location is not None:
            location = str(location)
            if not has_scheme(location):
                location = urljoin(path_to_uri(base_dir) + "/", location)
            result["location"] = location
        elif "path" in result:
            result.pop("path")
    return result


def load_job(path: str | None, process: Any) -> dict[str, Any]:
    """Read a job order (YAML or JSON) and resolve its file references.

    ``location``/``path`` of File and Directory objects are made absolute ``file://`` URIs
    relative to the job file; ``format`` prefixes are expanded with the job's and the
    process's ``$namespaces``; ``cwl:tool`` and ``$namespaces`` keys are dropped.
    ``cwl:requirements`` is kept as a list of plain requirement dicts: the caller adds them to
    the effective requirements of the top-level process (they override its own by class).

    Args:
        path: the job file, or None for an empty job.
        process: the cwl_utils process the job is for (used for namespaces).

    Returns:
        The job order, keyed by input short names.

    Raises:
        InputValidationError: the file cannot be read or is not a mapping (the message names it).
    """
    if path is None:
        return {}
    local = uri_to_path(path)
    yaml = YAML(typ="safe", pure=True)
    try:
        with open(local, encoding="utf-8") as handle:
            data = yaml.load(handle)
    except FileNotFoundError as exc:
        raise InputValidationError(f"{local}: no such job file") from exc
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{local}:{mark.line + 1}" if mark is not None else local
        raise InputValidationError(f"{where}: job file is not valid YAML/JSON: {exc}") from exc
    except OSError as exc:
        raise InputValidationError(f"{local}: cannot read job file: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise InputValidationError(f"{local}: a job file must hold a mapping of input names to values")
    namespaces: dict[str, str] = {}
    options = getattr(process, "loadingOptions", None)
    if options is not None and options.namespaces:
        namespaces.update({str(k): str(v) for k, v in options.namespaces.items()})
    if isinstance(data.get("$namespaces"), Mapping):
        namespaces.update({str(k): str(v) for k, v in data["$namespaces"].items()})
    job = {str(k): v for k, v in data.items() if not str(k).startswith("$") and str(k) != "cwl:tool"}
    if "cwl:requirements" in job:
        job["cwl:requirements"] = [dict(plain(r)) for r in job["cwl:requirements"] or []]
    job = _absolutise(job, os.path.dirname(os.path.abspath(local)))
    if namespaces:
        _expand_formats(job, namespaces)
    return job  # type: ignore[no-any-return]


def _expand_formats(value: Any, namespaces: Mapping[str, str]) -> None:
    if isinstance(value, list):
        for item in value:
            _expand_formats(item, namespaces)
    elif isinstance(value, dict):
        fmt = value.get("format")
        if is_file(value) and isinstance(fmt, str) and ":" in fmt and "://" not in fmt:
            prefix, rest = fmt.split(":", 1)
            if prefix in namespaces:
                value["format"] = namespaces[prefix] + rest
        for item in value.values():
            _expand_formats(item, namespaces)
