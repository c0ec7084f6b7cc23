"""File format checking, with ontology reasoning over the document's ``$schemas``.

A file's ``format`` matches a declared format when the two IRIs are equal, or when the
ontologies listed in ``$schemas`` say the file's format is a (transitive) ``rdfs:subClassOf``
or ``owl:equivalentClass`` of the declared one. Ontologies are parsed once per process
lifetime, and only when an exact comparison is not enough.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urljoin

__all__ = ["check_format", "document_namespaces", "document_schemas", "expand_iri"]

_graphs: dict[tuple[str, ...], Any] = {}
_lock = threading.Lock()


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


def _graph(schemas: Sequence[str]) -> Any:
    key = tuple(schemas)
    with _lock:
        if key in _graphs:
            return _graphs[key]
        import rdflib

        graph = rdflib.Graph()
        for schema in schemas:
            for fmt in ("xml", "turtle", None):
                try:
                    graph.parse(schema, format=fmt)
                    break
                except Exception:
                    continue
        _graphs[key] = graph
        return graph


def _related(graph: Any, start: str, target: str) -> bool:
    import rdflib
    from rdflib.namespace import OWL, RDFS

    seen: set[Any] = set()
    todo = [rdflib.URIRef(start)]
    goal = rdflib.URIRef(target)
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node in seen:
            continue
        seen.add(node)
        todo.extend(graph.objects(node, RDFS.subClassOf))
        todo.extend(graph.objects(node, OWL.equivalentClass))
        todo.extend(graph.subjects(OWL.equivalentClass, node))
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
    if schemas:
        graph = _graph(schemas)
        if any(_related(graph, have, w) for w in wanted):
            return None
    return f"expected format {' or '.join(wanted)}, got {have}"
