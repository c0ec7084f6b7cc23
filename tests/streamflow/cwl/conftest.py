"""Helpers for the CWL tool-layer tests: write small CWL documents into ``tmp_path``."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamflow.cwl.loader import LoadedDocument, load_document


@pytest.fixture
def write_tool(tmp_path: Path) -> Callable[..., LoadedDocument]:
    """Return a function that writes a CWL document (YAML text) and loads it."""
    counter = {"n": 0}

    def write(text: str, name: str | None = None) -> LoadedDocument:
        counter["n"] += 1
        path = tmp_path / (name or f"tool{counter['n']}.cwl")
        path.write_text(textwrap.dedent(text))
        return load_document(str(path))

    return write


def _write_file(path: Path, content: str = "") -> dict[str, Any]:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return {"class": "File", "location": path.as_uri()}


@pytest.fixture
def write_file() -> Callable[..., dict[str, Any]]:
    """Return a function that writes a file and returns a File object for it."""
    return _write_file
