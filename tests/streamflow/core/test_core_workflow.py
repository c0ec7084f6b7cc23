"""Tests of the workflow value types and tag helpers."""

from __future__ import annotations

import msgspec
import pytest

from streamflow.core.workflow import (
    CommandOutput,
    Job,
    Status,
    TerminationToken,
    Token,
    compare_tags,
    get_tag,
    parent_tag,
)


def test_status_values_match_streamflow() -> None:
    """Status keeps StreamFlow's persisted integer values."""
    assert [s.name for s in sorted(Status)] == [
        "WAITING", "FIREABLE", "RUNNING", "SKIPPED", "COMPLETED", "FAILED", "CANCELLED", "ROLLBACK", "RECOVERY", "RECOVERED",
    ]  # fmt: skip
    assert [int(s) for s in sorted(Status)] == list(range(10))


def test_status_terminal_flags() -> None:
    """Only SKIPPED, COMPLETED, FAILED, CANCELLED and RECOVERED are terminal."""
    assert {s for s in Status if s.terminal} == {
        Status.SKIPPED, Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.RECOVERED,
    }  # fmt: skip


def test_token_is_frozen_and_retag_update_copy() -> None:
    """Token is immutable; retag and update return modified copies."""
    token = Token({"a": 1}, tag="0.1")
    with pytest.raises(AttributeError):
        token.tag = "0.2"  # type: ignore[misc]
    assert token.retag("0.2") == Token({"a": 1}, tag="0.2")
    assert token.update(5) == Token(5, tag="0.1")
    assert token.tag == "0.1"


def test_token_round_trips_through_msgpack() -> None:
    """Tokens and jobs survive a msgspec encode/decode round trip."""
    token = Token([1, "x"], "0.3", recoverable=True)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(token), type=Token) == token
    job = Job("/s/0.3", "run1", "/s", "0.3", {"x": 1}, "/in", "/out", "/tmp", attempt=2)
    assert msgspec.json.decode(msgspec.json.encode(job), type=Job) == job


def test_termination_token_defaults_to_completed() -> None:
    """A TerminationToken carries the producer's final status, COMPLETED by default."""
    assert TerminationToken().value is Status.COMPLETED
    assert isinstance(TerminationToken(Status.FAILED), Token)


def test_job_defaults() -> None:
    """A Job starts at attempt 1 with no directories."""
    job = Job("n", "r", "s", "0")
    assert job.attempt == 1 and job.inputs == {} and job.input_directory is None


def test_command_output_update_keeps_status() -> None:
    """CommandOutput.update replaces the value and keeps the status."""
    assert CommandOutput(1, Status.FAILED).update(2) == CommandOutput(2, Status.FAILED)


@pytest.mark.parametrize(
    ("a", "b", "sign"),
    [("0", "0", 0), ("0.1", "0.2", -1), ("0.10", "0.2", 1), ("0.2", "0.1.0", -1), ("1", "0", 1)],
)
def test_compare_tags_orders_by_length_then_numerically(a: str, b: str, sign: int) -> None:
    """compare_tags puts shorter tags first, then compares components as integers."""
    result = compare_tags(a, b)
    assert (result > 0) - (result < 0) == sign


def test_compare_tags_rejects_non_numeric() -> None:
    """A tag that is not dotted integers is a ValueError."""
    with pytest.raises(ValueError, match="invalid tag"):
        compare_tags("0.a", "0")


def test_get_tag_takes_the_deepest_tag() -> None:
    """get_tag returns the longest tag, the first one on ties, and '0' for no tokens."""
    assert get_tag([Token(1, "0"), Token(2, "0.1.2"), Token(3, "0.4")]) == "0.1.2"
    assert get_tag([Token(1, "0.3"), Token(2, "0.4")]) == "0.3"
    assert get_tag([Token(1, "1")]) == "1"
    assert get_tag([]) == "0"


def test_parent_tag_strips_components() -> None:
    """parent_tag removes the last depth components and rejects impossible depths."""
    assert parent_tag("0.3.1") == "0.3"
    assert parent_tag("0.3.1", depth=2) == "0"
    with pytest.raises(ValueError):
        parent_tag("0")
    with pytest.raises(ValueError):
        parent_tag("0.1", depth=0)
