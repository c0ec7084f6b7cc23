"""File format checking, with ontology reasoning over the document's ``$schemas``.

A file's ``format`` matches a declared format when the two IRIs are equal, or when the
ontologies listed in ``$schemas`` say the file's format is a (transitive) ``rdfs:subClassOf``
or ``owl:equivalentClass`` of the declared one. Ontologies are read only when an exact
comparison is not enough, and only for what the check needs:

* an RDF/XML ontology (EDAM's ``EDAM.owl``, 2.6 MB) is read with the standard library's XML
  parser, keeping just its ``rdfs:subClassOf`` and ``owl:equivalentClass`` statements: about
  0.15 s instead of the 2.5 s rdflib takes to build the whole graph. Other syntaxes (Turtle,
  N-Triples, ...) and documents the XML reader does not understand go through rdflib;
* what was read is kept for the process's lifetime (the runner daemon serves many runs), one
  entry per location, valid while a local file keeps its modification time and size; runs
  in several threads share it, and a location is read by one of them at a time.
"""

from __future__ import annotations

import itertools
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

__all__ = ["check_format", "clear_ontology_cache", "document_namespaces", "document_schemas", "expand_iri"]

_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_RDFS = "http://www.w3.org/2000/01/rdf-schema#"
_OWL = "http://www.w3.org/2002/07/owl#"
_SUBCLASS = _RDFS + "subClassOf"
_EQUIVALENT = _OWL + "equivalentClass"
_RELATIONS = {"{" + _RDFS + "}subClassOf": _SUBCLASS, "{" + _OWL + "}equivalentClass": _EQUIVALENT}
_ABOUT = "{" + _RDF + "}about"
_ID = "{" + _RDF + "}ID"
_NODE_ID = "{" + _RDF + "}nodeID"
_RESOURCE = "{" + _RDF + "}resource"
_PARSE_TYPE = "{" + _RDF + "}parseType"
_XML_BASE = "{http://www.w3.org/XML/1998/namespace}base"
_RDF_NIL = _RDF + "nil"
_MAX_CACHED = 32


@dataclass(frozen=True)
class _Ontology:
    """The class relations of one ontology document.

    ``related`` maps a class to the classes one step away: its ``rdfs:subClassOf``
    superclasses and its ``owl:equivalentClass`` classes (either side of the statement).
    IRIs are kept as strings; blank nodes are ``_:<n>:<label>``, unique to the document.
    """

    related: Mapping[str, tuple[str, ...]]


class _Entry:
    """A cache slot: the lock of its location and the last ontology read from it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stamp: tuple[int, int] | None = None
        self.ontology: _Ontology | None = None


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()
_documents = itertools.count()


def expand_iri(value: str, namespaces: Mapping[str, str]) -> str:
    """Expand a ``prefix:name`` format using ``$namespaces`` (other values are returned as is)."""
    if ":" in value and "://" not in value:
        prefix, rest = value.split(":", 1)
        if prefix in namespaces:
            return namespaces[prefix] + rest
    return value


def document_schemas(process: Any) -> list[str]:
    """Return the absolute locations of a cwl_utils process's ``$schemas``."""
    options = getattr(process, "loadingOptions", None)
    if options is None or not options.schemas:
        return []
    base = str(options.fileuri or options.baseuri or "")
    return [urljoin(base, str(s)) for s in options.schemas]


def document_namespaces(process: Any) -> dict[str, str]:
    """Return a cwl_utils process's ``$namespaces``."""
    options = getattr(process, "loadingOptions", None)
    if options is None or not options.namespaces:
        return {}
    return {str(k): str(v) for k, v in options.namespaces.items()}


def clear_ontology_cache() -> None:
    """Forget every ontology read so far (tests; a long-lived process that wants memory back)."""
    with _lock:
        _entries.clear()


# -- reading an ontology --------------------------------------------------------------------


class _Relations:
    """Collects class relations while a document is read."""

    def __init__(self) -> None:
        self.document = next(_documents)
        self.blanks = itertools.count()
        self.related: dict[str, list[str]] = {}

    def blank(self, label: str | None = None) -> str:
        return f"_:{self.document}:{label if label is not None else '#' + str(next(self.blanks))}"

    def add(self, subject: str, predicate: str, obj: str) -> None:
        self.related.setdefault(subject, []).append(obj)
        if predicate == _EQUIVALENT:
            self.related.setdefault(obj, []).append(subject)

    def freeze(self) -> _Ontology:
        return _Ontology({k: tuple(dict.fromkeys(v)) for k, v in self.related.items()})


def _base(element: ET.Element, base: str) -> str:
    given = element.get(_XML_BASE)
    if given is None:
        return base
    return urldefrag(urljoin(base, given))[0]


def _absolute(base: str, reference: str) -> str:
    result = urljoin(base, reference)
    if reference.endswith("#") and not result.endswith("#"):
        result += "#"
    return result


def _node_element(element: ET.Element, base: str, found: _Relations) -> str:
    """Read an RDF/XML node element; return its subject."""
    base = _base(element, base)
    about = element.get(_ABOUT)
    if about is not None:
        subject = _absolute(base, about)
    elif element.get(_ID) is not None:
        subject = _absolute(base, "#" + str(element.get(_ID)))
    elif element.get(_NODE_ID) is not None:
        subject = found.blank(element.get(_NODE_ID))
    else:
        subject = found.blank()
    for child in element:
        _property_element(child, subject, base, found)
    return subject


def _property_element(element: ET.Element, subject: str, base: str, found: _Relations) -> None:
    """Read an RDF/XML property element of ``subject``, recording the class relations."""
    base = _base(element, base)
    predicate = _RELATIONS.get(element.tag)
    parse_type = element.get(_PARSE_TYPE)
    obj: str | None = None
    if parse_type == "Resource":
        obj = found.blank()
        for child in element:
            _property_element(child, obj, base, found)
    elif parse_type == "Collection":
        items = [_node_element(child, base, found) for child in element]
        obj = found.blank() if items else _RDF_NIL
    elif parse_type is not None:
        return  # an XML literal
    elif len(element):
        obj = _node_element(element[0], base, found)
    elif predicate is None:
        return  # an IRI or a literal that relates no classes: not worth resolving
    elif element.get(_RESOURCE) is not None:
        obj = _absolute(base, str(element.get(_RESOURCE)))
    elif element.get(_NODE_ID) is not None:
        obj = found.blank(element.get(_NODE_ID))
    if predicate is not None and obj is not None:
        found.add(subject, predicate, obj)


def _read_rdf_xml(data: bytes, location: str) -> _Ontology:
    """Read the class relations of an RDF/XML document (raises ``ET.ParseError``)."""
    root = ET.fromstring(data)
    found = _Relations()
    base = _base(root, urldefrag(location)[0])
    if root.tag == "{" + _RDF + "}RDF":
        for child in root:
            _node_element(child, base, found)
    else:
        _node_element(root, base, found)
    return found.freeze()


def _read_with_rdflib(location: str) -> _Ontology | None:
    """Read the class relations of a document in any syntax rdflib knows (None if none fits)."""
    import rdflib
    from rdflib.namespace import OWL, RDFS

    for fmt in ("xml", "turtle", None):
        graph = rdflib.Graph()
        try:
            graph.parse(location, format=fmt)
        except Exception:
            continue
        found = _Relations()
        for predicate, key in ((RDFS.subClassOf, _SUBCLASS), (OWL.equivalentClass, _EQUIVALENT)):
            for s, o in graph.subject_objects(predicate):
                subject, obj = _rdflib_name(s, found), _rdflib_name(o, found)
                if subject is not None and obj is not None:
                    found.add(subject, key, obj)
        return found.freeze()
    return None


def _rdflib_name(term: Any, found: _Relations) -> str | None:
    import rdflib

    if isinstance(term, rdflib.BNode):
        return found.blank(str(term))
    if isinstance(term, rdflib.URIRef):
        return str(term)
    return None  # a literal relates to nothing


def _looks_like_xml(data: bytes) -> bool:
    head = data[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def _read(location: str, path: str | None) -> _Ontology:
    """Read one ontology document; a document that cannot be read relates nothing."""
    if path is None:
        return _read_with_rdflib(location) or _Ontology({})
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return _Ontology({})
    if _looks_like_xml(data):
        try:
            return _read_rdf_xml(data, location)
        except ET.ParseError:
            pass
    return _read_with_rdflib(location) or _Ontology({})


def _local_path(location: str) -> str | None:
    parts = urlsplit(location)
    if parts.scheme == "file":
        return unquote(parts.path)
    if parts.scheme == "" and location:
        return location
    return None


def _stamp(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _ontology(location: str) -> _Ontology:
    """Return the ontology at ``location``, read at most once while the file is unchanged."""
    path = _local_path(location)
    stamp = _stamp(path)
    with _lock:
        entry = _entries.get(location)
        if entry is None:
            if len(_entries) >= _MAX_CACHED:
                _entries.pop(next(iter(_entries)))
            entry = _entries[location] = _Entry()
    with entry.lock:
        current = entry.ontology is not None and (path is None or (stamp is not None and entry.stamp == stamp))
        if not current:
            entry.ontology = _read(location, path)
            entry.stamp = stamp if stamp is not None and _stamp(path) == stamp else None
        assert entry.ontology is not None
        return entry.ontology


def _related(ontologies: Iterable[_Ontology], start: str, targets: Iterable[str]) -> bool:
    goals = set(targets)
    graphs = list(ontologies)
    seen: set[str] = set()
    todo = [start]
    while todo:
        node = todo.pop()
        if node in goals:
            return True
        if node in seen:
            continue
        seen.add(node)
        for graph in graphs:
            todo.extend(graph.related.get(node, ()))
    return False


def check_format(
    actual: str, declared: Any, namespaces: Mapping[str, str], schemas: Sequence[str] = ()
) -> str | None:
    """Check a file's format against the declared format(s).

    Args:
        actual: the file's ``format`` IRI (or ``prefix:name``).
        declared: the parameter's ``format`` (an IRI or a list of IRIs).
        namespaces: ``$namespaces`` used to expand prefixes.
        schemas: absolute locations of the ontologies in ``$schemas``.

    Returns:
        None if the format matches, otherwise a message saying what was expected.
    """
    wanted = [
        expand_iri(str(d), namespaces) for d in (declared if isinstance(declared, list) else [declared]) if d
    ]
    if not wanted:
        return None
    have = expand_iri(actual, namespaces)
    if have in wanted:
        return None
    if schemas and _related((_ontology(s) for s in dict.fromkeys(schemas)), have, wanted):
        return None
    return f"expected format {' or '.join(wanted)}, got {have}"
