"""Small helpers shared by the CWL tool layer.

The tool layer works on *plain* JSON-like views of the cwl_utils objects (dicts and lists
produced once per object by :func:`plain`), because CWL values themselves (job orders,
File objects, outputs) are plain JSON and the two meet everywhere.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cwl_utils.parser import save

__all__ = [
    "PRIMITIVE_TYPES",
    "Requirements",
    "bus_safe",
    "checksum",
    "describe_value",
    "fill_file_names",
    "has_scheme",
    "is_directory",
    "is_file",
    "path_to_uri",
    "plain",
    "requirement_class",
    "restore_big_numbers",
    "shortname",
    "uri_to_path",
]

PRIMITIVE_TYPES = frozenset({"null", "boolean", "int", "long", "float", "double", "string"})
"""The CWL primitive type names (File, Directory and Any are handled separately)."""

_CWL_NS = "https://w3id.org/cwl/cwl#"
_plain_cache: dict[int, tuple[Any, Any]] = {}
_plain_lock = threading.Lock()


def plain(obj: Any) -> Any:
    """Return the plain (JSON-like) view of a cwl_utils object, with absolute identifiers.

    Views of cwl_utils objects are computed once and cached for the object's lifetime, so a
    1000-job scatter over one tool does not serialise the tool 1000 times. Plain values are
    returned unchanged.

    Args:
        obj: a cwl_utils object, a list of them, or an already-plain value.

    Returns:
        The plain view. Callers must not mutate it.
    """
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, Mapping):
        return obj
    if isinstance(obj, list):
        return [plain(item) for item in obj]
    key = id(obj)
    cached = _plain_cache.get(key)
    if cached is not None and cached[0] is obj:
        return cached[1]
    view = save(obj, top=False, relative_uris=False)
    with _plain_lock:
        if len(_plain_cache) > 4096:
            _plain_cache.clear()
        _plain_cache[key] = (obj, view)
    return view


def shortname(uri: str) -> str:
    """Return the short name of a CWL identifier (``file:///a.cwl#step/inp`` -> ``inp``)."""
    fragment = uri.split("#", 1)[-1]
    return fragment.rsplit("/", 1)[-1]


def requirement_class(req: Any) -> str:
    """Return the short class name of a requirement or hint (namespace prefixes removed)."""
    cls = str(plain(req).get("class", "")) if isinstance(plain(req), Mapping) else ""
    if cls.startswith(_CWL_NS):
        return cls[len(_CWL_NS) :]
    return cls


class Requirements:
    """The effective requirements and hints of one process invocation.

    Requirements take precedence over hints of the same class (CWL v1.2 "Requirements and
    hints"). Entries are plain dicts.

    Args:
        requirements: effective requirements (cwl_utils objects or plain dicts).
        hints: effective hints (cwl_utils objects or plain dicts).
    """

    def __init__(self, requirements: Iterable[Any], hints: Iterable[Any] = ()) -> None:
        self.requirements: dict[str, dict[str, Any]] = {}
        self.hints: dict[str, dict[str, Any]] = {}
        for target, entries in ((self.requirements, requirements), (self.hints, hints)):
            for entry in entries:
                view = plain(entry)
                if isinstance(view, Mapping):
                    target[requirement_class(view)] = dict(view)

    def get(self, cls: str) -> dict[str, Any] | None:
        """Return the requirement (or, failing that, the hint) of class ``cls``, if any."""
        found = self.requirements.get(cls)
        if found is None:
            found = self.hints.get(cls)
        return found

    def required(self, cls: str) -> dict[str, Any] | None:
        """Return the requirement of class ``cls`` (ignoring hints), if any."""
        return self.requirements.get(cls)

    def as_list(self) -> list[dict[str, Any]]:
        """Return requirements, then the hints not overridden by a requirement."""
        merged = list(self.requirements.values())
        merged.extend(h for c, h in self.hints.items() if c not in self.requirements)
        return merged


def is_file(value: Any) -> bool:
    """Return whether ``value`` is a CWL File object."""
    return isinstance(value, Mapping) and value.get("class") == "File"


def is_directory(value: Any) -> bool:
    """Return whether ``value`` is a CWL Directory object."""
    return isinstance(value, Mapping) and value.get("class") == "Directory"


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def has_scheme(location: str) -> bool:
    """Return whether ``location`` is an absolute URI (``file:``, ``http:``, ``_:``...)."""
    return location.startswith("_:") or bool(_SCHEME.match(location))


def uri_to_path(location: str) -> str:
    """Return the local path of a ``file://`` URI (or of a plain path)."""
    if location.startswith("file:"):
        return unquote(urlsplit(location).path)
    return location


def path_to_uri(path: str) -> str:
    """Return the ``file://`` URI of an absolute local path (special characters quoted)."""
    return "file://" + quote(os.path.abspath(path), safe="/:~!$&'()*+,;=@")


def fill_file_names(value: dict[str, Any]) -> None:
    """Set ``basename``, ``nameroot``, ``nameext`` and ``dirname`` from ``path``/``location``.

    Args:
        value: a File or Directory object; modified in place.
    """
    path = value.get("path") or uri_to_path(str(value.get("location", "")))
    if "basename" not in value or not value["basename"]:
        value["basename"] = posixpath.basename(path.rstrip("/"))
    if path:
        value["dirname"] = posixpath.dirname(path.rstrip("/"))
    if value.get("class") == "File":
        root, ext = posixpath.splitext(value["basename"])
        value["nameroot"] = root
        value["nameext"] = ext


def checksum(path: str) -> str:
    """Return the CWL checksum (``sha1$<hex>``) of a local file."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha1$" + digest.hexdigest()


def describe_value(value: Any) -> str:
    """Describe a JSON value for error messages (``string 'abc'``, ``int 3``, ``File x.txt``)."""
    match value:
        case None:
            return "null"
        case bool():
            return f"boolean {str(value).lower()}"
        case int():
            return f"int {value}"
        case float():
            return f"float {value}"
        case str():
            text = value if len(value) <= 40 else value[:37] + "..."
            return f"string {text!r}"
        case list():
            return f"array of {len(value)} items"
        case Mapping() if value.get("class") in ("File", "Directory"):
            name = value.get("basename") or value.get("location") or value.get("path") or "?"
            return f"{value['class']} {name}"
        case Mapping():
            return "record {" + ", ".join(sorted(str(k) for k in value)[:5]) + "}"
    return type(value).__name__


_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
_BIG = float(2**63)


def bus_safe(value: Any) -> Any:
    """Return ``value`` with integers too large for the event codec (64 bits) as floats.

    Events are MessagePack, which has no integers beyond 64 bits, while CWL ``long`` and
    ``double`` values (and JSON numbers in general) may be any size. Such a number travels
    as the nearest double; :func:`restore_big_numbers` gives the integer back at the end.
    Values that need no change are returned as they are (not copied).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value) if value < _INT_MIN or value > _INT_MAX else value
    if isinstance(value, list):
        items = [bus_safe(v) for v in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict):
        changed = {k: bus_safe(v) for k, v in value.items()}
        return changed if any(changed[k] is not value[k] for k in value) else value
    return value


def restore_big_numbers(value: Any) -> Any:
    """Undo :func:`bus_safe` for output: integral floats beyond 64 bits become integers.

    The integer is the one the float's shortest representation spells (``4.2e+42`` gives
    ``42`` followed by 41 zeros), which is the original number whenever it had at most 17
    significant digits.
    """
    if isinstance(value, float):
        if abs(value) >= _BIG and value == value and value not in (float("inf"), float("-inf")):
            from decimal import Decimal

            return int(Decimal(repr(value)))
        return value
    if isinstance(value, list):
        return [restore_big_numbers(v) for v in value]
    if isinstance(value, dict):
        return {k: restore_big_numbers(v) for k, v in value.items()}
    return value
