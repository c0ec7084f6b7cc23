"""Pinned public names of ``events`` and ``actors``, and the published JSON Schema of the event log."""

from __future__ import annotations

import importlib
import json
import os
import uuid
from typing import Any

import jsonschema
import msgspec
import msgspec.inspect as mi
import pytest

from events.log import EventLog
from events.schema import EventBody, JobFailed, RunSubmitted, TokenEmitted
from tests.conftest import run_cli

EXPORTS = {
    "events": [
        "AppendResult", "EVENTS_STREAM", "Envelope", "Event", "EventBody", "EventLog", "Record", "RunSummary",
        "TASKS_STREAM", "decode", "encode", "event_id", "event_type", "run_subject",
    ],
    "actors": ["Actor", "ActorHost", "RunContext"],
}  # fmt: skip


@pytest.mark.parametrize("module_name", sorted(EXPORTS))
def test_package_all_is_pinned(module_name: str) -> None:
    """The package's __all__ matches the pinned list exactly, and every name resolves."""
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(EXPORTS[module_name])
    for name in module.__all__:
        assert hasattr(module, name), name


@pytest.fixture(scope="module")
def events_schema() -> dict[str, Any]:
    """The output of ``streamflow schema events``, parsed."""
    result = run_cli(["schema", "events"], dict(os.environ))
    assert result.returncode == 0, result.stderr
    schema: dict[str, Any] = json.loads(result.stdout)
    return schema


def test_schema_command_prints_a_valid_draft_2020_12_schema(events_schema: dict[str, Any]) -> None:
    """``streamflow schema events`` prints a JSON Schema that is itself valid (Draft 2020-12)."""
    jsonschema.Draft202012Validator.check_schema(events_schema)
    assert events_schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_names_every_event_type(events_schema: dict[str, Any]) -> None:
    """Every tag of the EventBody union is described in the schema's definitions."""
    tags = {t.tag for t in mi.type_info(EventBody).types}  # type: ignore[attr-defined]
    described = set()
    for definition in events_schema.get("$defs", {}).values():
        enum = definition.get("properties", {}).get("type", {}).get("enum", [])
        described.update(enum)
    assert tags <= described, tags - described


async def test_schema_validates_a_real_envelope_read_back_from_the_log(events_schema: dict[str, Any],
                                                                      event_log: EventLog) -> None:
    """Envelopes appended to and read back from JetStream validate against the published schema."""
    run = "t" + uuid.uuid4().hex[:12]
    bodies = [
        RunSubmitted(name="wf", workflow="/w.cwl", inputs={"x": [1, {"class": "File", "path": "/a"}]},
                     steps={"s0": "/a"}),
        TokenEmitted(tag="0.1", value={"k": None}, producer="s0", inputs=["e" * 32]),
        JobFailed(job="s1-0", error="exit 1", exit_code=1),
    ]
    for i, body in enumerate(bodies):
        await event_log.append(run, "wf", None, body, producer="test", key=str(i), causation_id="c", epoch=3)
    validator = jsonschema.Draft202012Validator(events_schema)
    count = 0
    async for record in event_log.read(run):
        instance = msgspec.to_builtins(record.envelope)
        validator.validate(instance)
        count += 1
    assert count == len(bodies)


def test_schema_rejects_an_unknown_event_type(events_schema: dict[str, Any]) -> None:
    """An envelope whose body has an unknown type does not validate."""
    instance = {"event_id": "e", "run_id": "r", "producer": "p", "body": {"type": "NoSuchEvent"}}
    assert not jsonschema.Draft202012Validator(events_schema).is_valid(instance)
