"""Run ids are checked before they become subjects; unknown runs are errors (issue 14, point 4)."""

from __future__ import annotations

import json

import pytest

from events.log import EventLog, run_subject
from events.schema import RunCancelled
from tests.conftest import run_cli

HOSTILE_IDS = [">", "*", "a.b", "a b", "x" * 129, ""]

COMMANDS = [
    ["cancel"], ["status"], ["events"], ["resume"], ["rerun"], ["host", "--actors", "steps"], ["report"],
    ["prov"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_every_command_refuses_a_hostile_run_id(command: list[str], sf_env: dict[str, str]) -> None:
    """Exit 2 with a message naming the id, before anything reaches the bus."""
    for bad in (">", "a.b"):
        result = run_cli([command[0], bad, *command[1:]], sf_env, timeout=60)
        assert result.returncode == 2, (command, bad, result.stderr)
        assert "invalid run id" in result.stderr


def test_run_refuses_a_hostile_run_id(tmp_path: object, sf_env: dict[str, str]) -> None:
    result = run_cli(["run", "--run-id", "*", "nothing.cwl"], sf_env, timeout=60)
    assert result.returncode == 2 and "invalid run id" in result.stderr


def test_cancel_of_an_unknown_run_is_an_error_and_writes_nothing(sf_env: dict[str, str]) -> None:
    """`cancel` of a run that does not exist exits 2; no phantom run appears; `list` still works."""
    before = run_cli(["events", "--all", "--json"], sf_env, timeout=60)
    assert before.returncode == 0, before.stderr
    result = run_cli(["cancel", "no-such-run-14"], sf_env, timeout=60)
    assert result.returncode == 2
    assert "no run 'no-such-run-14'" in result.stderr
    after = run_cli(["events", "--all", "--json"], sf_env, timeout=60)
    assert after.stdout.count("\n") == before.stdout.count("\n")
    listed = run_cli(["list", "--json"], sf_env, timeout=60)
    assert listed.returncode == 0
    assert "no-such-run-14" not in listed.stdout
    for line in listed.stdout.splitlines():
        json.loads(line)


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_run_subject_refuses_what_is_not_one_token(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        run_subject(bad, "wf")


async def test_the_log_refuses_to_append_under_a_hostile_run_id(event_log: EventLog) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        await event_log.append(">", "wf", None, RunCancelled(reason="x"), producer="test")
