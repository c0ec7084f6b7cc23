"""Format checking against ontologies: the RDF/XML reader, the rdflib fallback and the cache."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import rdflib
from rdflib.namespace import OWL, RDFS

from streamflow.cwl import formats
from streamflow.cwl.formats import check_format, clear_ontology_cache

EX = "http://example.com/formats/"
NS = {"ex": EX}

# Every RDF/XML form a class relation can take: rdf:about, rdf:ID against xml:base, typed and
# rdf:Description nodes, nested node elements, rdf:nodeID, parseType="Resource" and
# "Collection", an XML literal (which relates nothing), relative IRIs and entities.
ONTOLOGY = """\
<?xml version="1.0"?>
<!DOCTYPE rdf:RDF [
    <!ENTITY ex "http://example.com/formats/" >
]>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
         xmlns:rdfs="http://www.w3.org/2000/01/rdf-schema#"
         xmlns:owl="http://www.w3.org/2002/07/owl#"
         xml:base="http://example.com/formats/">
  <owl:Class rdf:about="fasta">
    <rdfs:subClassOf rdf:resource="&ex;sequence"/>
    <rdfs:label>FASTA</rdfs:label>
  </owl:Class>
  <rdf:Description rdf:about="http://example.com/formats/sequence">
    <rdfs:subClassOf>
      <owl:Class rdf:about="textual">
        <rdfs:subClassOf rdf:resource="data"/>
      </owl:Class>
    </rdfs:subClassOf>
    <rdfs:subClassOf>
      <owl:Restriction>
        <owl:onProperty rdf:resource="has_part"/>
        <owl:someValuesFrom rdf:resource="residue"/>
      </owl:Restriction>
    </rdfs:subClassOf>
  </rdf:Description>
  <owl:Class rdf:ID="genbank" xml:base="http://example.com/other">
    <owl:equivalentClass rdf:nodeID="gb"/>
  </owl:Class>
  <owl:Class rdf:nodeID="gb">
    <rdfs:subClassOf rdf:resource="http://example.com/formats/sequence"/>
  </owl:Class>
  <owl:Class rdf:about="embl">
    <rdfs:subClassOf rdf:parseType="Resource">
      <rdfs:subClassOf rdf:resource="textual"/>
    </rdfs:subClassOf>
    <owl:equivalentClass rdf:resource="embl_flat"/>
  </owl:Class>
  <owl:Class rdf:about="either">
    <owl:unionOf rdf:parseType="Collection">
      <owl:Class rdf:about="left"><rdfs:subClassOf rdf:resource="data"/></owl:Class>
      <owl:Class rdf:about="right"/>
    </owl:unionOf>
    <rdfs:comment rdf:parseType="Literal"><b>not <rdfs:subClassOf rdf:resource="fasta"/></b></rdfs:comment>
  </owl:Class>
</rdf:RDF>
"""


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    clear_ontology_cache()


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return path.as_uri()


def _edges(ontology: Any) -> set[tuple[str, str]]:
    """Relations between IRIs, blank nodes collapsed (their labels differ between readers)."""
    return {
        (s if not s.startswith("_:") else "_", o if not o.startswith("_:") else "_")
        for s, objects in ontology.related.items()
        for o in objects
    }


def test_rdf_xml_reader_agrees_with_rdflib(tmp_path: Path) -> None:
    """The XML reader finds the same class relations as rdflib's full RDF/XML parser."""
    location = _write(tmp_path / "onto.owl", ONTOLOGY)
    fast = formats._read_rdf_xml(ONTOLOGY.encode(), location)
    reference = formats._read_with_rdflib(location)
    assert reference is not None
    assert _edges(fast) == _edges(reference)
    graph = rdflib.Graph().parse(location, format="xml")
    expected = {
        (str(s), str(o))
        for p in (RDFS.subClassOf, OWL.equivalentClass)
        for s, o in graph.subject_objects(p)
        if isinstance(s, rdflib.URIRef) and isinstance(o, rdflib.URIRef)
    }
    assert expected <= _edges(fast)
    assert ("http://example.com/other#genbank", "_") in _edges(fast)


@pytest.mark.parametrize(
    ("actual", "declared", "ok"),
    [
        ("ex:fasta", "ex:sequence", True),
        ("ex:fasta", "ex:data", True),  # transitively, through a nested node element
        ("http://example.com/other#genbank", "ex:textual", True),  # rdf:ID, blank node, equivalence
        ("ex:embl_flat", "ex:embl", True),  # equivalence holds both ways
        ("ex:embl", "ex:embl_flat", True),
        ("ex:left", "ex:data", True),  # a class described inside a collection
        ("ex:sequence", "ex:fasta", False),  # not the other way round
        ("ex:embl", "ex:textual", True),  # through the superclass of a blank superclass
        ("ex:either", "ex:fasta", False),  # an XML literal states nothing
        ("ex:fasta", ["ex:embl", "ex:data"], True),
    ],
)
def test_check_format_reasons_over_the_ontology(
    tmp_path: Path, actual: str, declared: Any, ok: bool
) -> None:
    """subClassOf is followed upwards, equivalentClass both ways, transitively."""
    location = _write(tmp_path / "onto.owl", ONTOLOGY)
    problem = check_format(actual, declared, NS, [location])
    assert (problem is None) is ok


def test_turtle_and_rdf_xml_schemas_combine(tmp_path: Path) -> None:
    """A Turtle schema (read by rdflib) extends an RDF/XML one, as in the gx_edam test."""
    owl = _write(tmp_path / "onto.owl", ONTOLOGY)
    ttl = _write(
        tmp_path / "extra.ttl",
        "@prefix owl: <http://www.w3.org/2002/07/owl#> .\n"
        "@prefix ex: <http://example.com/formats/> .\n"
        "@prefix gx: <http://example.com/gx/> .\n"
        "gx:fasta a owl:Class ; owl:equivalentClass ex:fasta .\n",
    )
    namespaces = {**NS, "gx": "http://example.com/gx/"}
    assert check_format("gx:fasta", "ex:sequence", namespaces, [owl, ttl]) is None
    assert check_format("gx:fasta", "ex:sequence", namespaces, [ttl]) is not None


def test_unreadable_schemas_relate_nothing(tmp_path: Path) -> None:
    """A missing or malformed schema makes only exact matches pass."""
    bad = _write(tmp_path / "bad.owl", "<rdf:RDF this is not XML")
    missing = (tmp_path / "missing.owl").as_uri()
    assert check_format("ex:a", "ex:b", NS, [bad, missing]) == f"expected format {EX}b, got {EX}a"
    assert check_format("ex:a", "ex:a", NS, [bad, missing]) is None


def test_ontologies_are_read_once_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cache serves later checks; a new modification time or size reads the file again."""
    reads: list[str] = []
    real = formats._read

    def counting(location: str, path: str | None) -> Any:
        reads.append(location)
        return real(location, path)

    monkeypatch.setattr(formats, "_read", counting)
    target = tmp_path / "onto.owl"
    location = _write(target, ONTOLOGY)
    for _ in range(3):
        assert check_format("ex:fasta", "ex:data", NS, [location]) is None
    assert len(reads) == 1

    target.write_text(ONTOLOGY.replace('<rdfs:subClassOf rdf:resource="data"/>', ""))
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert check_format("ex:fasta", "ex:data", NS, [location]) is not None
    assert len(reads) == 2


def test_concurrent_checks_read_an_ontology_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs in several threads of the daemon share one read of a schema."""
    reads: list[str] = []
    started = threading.Barrier(8)
    real = formats._read

    def slow(location: str, path: str | None) -> Any:
        reads.append(location)
        return real(location, path)

    monkeypatch.setattr(formats, "_read", slow)
    location = _write(tmp_path / "onto.owl", ONTOLOGY)
    results: list[str | None] = []

    def check() -> None:
        started.wait()
        results.append(check_format("ex:fasta", "ex:data", NS, [location]))

    threads = [threading.Thread(target=check) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [None] * 8
    assert reads == [location]
