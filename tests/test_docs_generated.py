"""The generated reference pages in ``docs/`` are up to date with the code they describe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _check(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / script), "--check"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("script", ["gen_events_doc.py", "gen_cli_doc.py", "gen_connectors_doc.py"])
def test_generated_docs_are_up_to_date(script: str) -> None:
    """`scripts/<script> --check` exits 0: the committed docs match what the script generates."""
    result = _check(script)
    assert result.returncode == 0, (
        f"{script} --check failed; regenerate with `python scripts/{script}`\n{result.stderr}"
    )


def test_events_doc_covers_every_event() -> None:
    """docs/events.md has a section for every event of the EventBody union, by tag."""
    import typing

    from events.schema import EventBody

    text = (ROOT / "docs" / "events.md").read_text()
    for cls in typing.get_args(EventBody):
        assert f"### {cls.__name__}\n" in text
        assert f"- tag: `{cls.__struct_config__.tag}`" in text


def test_cli_doc_covers_every_command() -> None:
    """docs/cli.md has a section for every ``streamflow`` sub-command and the cwl-runner entry point."""
    import argparse

    from streamflow.cli.main import build_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name in commands:
        assert f"### `streamflow {name}`\n" in text
    assert "## `streamflow-cwl-runner`\n" in text


def test_connectors_doc_covers_every_connector() -> None:
    """docs/connectors.md has a section for every connector type of StreamFlow's own plugins."""
    from streamflow.plugins import Registry

    text = (ROOT / "docs" / "connectors.md").read_text()
    registry = Registry.default()
    for name in registry.names("connector"):
        if registry.get("connector", name).__module__.startswith(("streamflow.", "actors.")):
            assert f"`{name}`" in text and (f"## `{name}`" in text or f"alias `{name}`" in text)


def test_check_fails_on_stale_docs(tmp_path: Path) -> None:
    """`--check` exits 1 (and says how to fix it) when a generated file differs from the code."""
    (tmp_path / "events.md").write_text("# stale\n")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_events_doc.py"), "--check", "--docs", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 1
    assert "gen_events_doc.py" in result.stderr
