"""Golden event logs from real runs, replayed in every test run with the current codec and folds.

``tests/data/golden/<name>.jsonl`` holds every record of a captured run;
``<name>.expected.json`` the values its replay must give. A schema change that stops old
logs from decoding (a renamed tag without upcaster, a changed field type, a dropped field)
or changes what the folds make of them fails here. Re-capture with
``python tests/data/capture_golden.py`` only for a deliberate, documented change.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from events.schema import RunCompleted
from tests.conftest import REPO
from tests.data.golden_fold import expected_values, fold

GOLDEN = REPO / "tests" / "data" / "golden"
LOGS = sorted(GOLDEN.glob("*.jsonl"))


def _expected(log: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(log.with_suffix(".expected.json").read_text())
    return data


def test_golden_logs_are_present() -> None:
    """There are golden logs to replay, each with its expected values."""
    assert LOGS, f"no golden logs in {GOLDEN}"
    for log in LOGS:
        assert log.with_suffix(".expected.json").is_file(), log.name


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
async def test_golden_log_replays_to_the_expected_state(log: Path) -> None:
    """Every record decodes with the current codec and the folds reach the pinned final state."""
    expected = _expected(log)
    state = fold(log, REPO / expected["workflow"])
    assert expected_values(state) == {k: v for k, v in expected.items() if k != "workflow"}


@pytest.mark.parametrize("log", LOGS, ids=[p.stem for p in LOGS])
async def test_golden_log_folds_to_a_fully_terminated_completed_run(log: Path) -> None:
    """Independently of the pinned file: every step and port terminated and the supervisor saw RunCompleted."""
    state = fold(log, REPO / _expected(log)["workflow"])
    assert [r.seq for r in state.records] == list(range(1, len(state.records) + 1))
    assert [r.stream_seq for r in state.records] == sorted(r.stream_seq for r in state.records)
    assert all(step.terminated and not step.failed for step in state.steps)
    assert all(port.terminated for port in state.ports)
    assert isinstance(state.supervisor.final, RunCompleted)
    assert state.supervisor.terminated_steps == set(state.graph.steps)
    assert state.summary.status == "COMPLETED"
    assert state.summary.steps_terminated == set(state.graph.steps)
    assert state.summary.outputs == state.supervisor.final.outputs
    assert set(state.supervisor.outputs) == set(state.graph.outputs)
    for step in state.steps:  # replayed state shows every fired tag's work as recorded: nothing to redo
        if step.out_ports:
            assert all(step.is_complete(tag) for tag in step.ready), step.step.name
