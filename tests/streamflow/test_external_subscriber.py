"""A program outside StreamFlow can follow a run with only nats-py and a MessagePack decoder.

This test uses none of the project's classes to read the log: it subscribes to
``sf.ev.<run>.>`` on the ``SF_EVENTS`` stream with an ordered consumer, decodes each
message with ``msgspec.msgpack`` into plain dicts and validates them against the JSON
Schema printed by ``streamflow schema events`` (the contract ``docs/monitoring.md`` shows).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import nats
from nats.js.api import DeliverPolicy

from tests.conftest import run_cli
from tests.streamflow.cli.conftest import run_workflow


async def _read_run(url: str, token: str, run_id: str) -> list[dict[str, Any]]:
    nc = await nats.connect(url, token=token)
    try:
        js = nc.jetstream()
        received: asyncio.Queue[Any] = asyncio.Queue()

        async def on_message(msg: Any) -> None:
            await received.put(msg)

        sub = await js.subscribe(f"sf.ev.{run_id}.>", stream="SF_EVENTS", cb=on_message,
                                 ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(20):
            while True:
                msg = await received.get()
                envelope = msgspec.msgpack.decode(msg.data)
                events.append({"subject": msg.subject, "stream_seq": msg.metadata.sequence.stream,
                               "envelope": envelope})
                if envelope["body"]["type"] in ("RunCompleted", "RunFailed", "RunCancelled"):
                    break
        await sub.unsubscribe()
        return events
    finally:
        await nc.close()


async def test_external_subscriber_reads_and_validates_a_run(
        tmp_path: Path, sf_env: dict[str, str]) -> None:
    """Plain nats-py + msgspec decoding yields schema-valid envelopes matching ``streamflow events``."""
    run = await asyncio.to_thread(run_workflow, tmp_path, sf_env)
    schema_out = run_cli(["schema", "events"], sf_env)
    assert schema_out.returncode == 0, schema_out.stderr
    schema = json.loads(schema_out.stdout)
    validator = jsonschema.Draft202012Validator(schema)

    events = await _read_run(sf_env["STREAMFLOW_NATS_URL"], sf_env["STREAMFLOW_NATS_TOKEN"], run.run_id)

    for event in events:
        assert isinstance(event["envelope"], dict)
        errors = sorted(validator.iter_errors(event["envelope"]), key=str)
        assert not errors, (event, errors[0].message if errors else None)
        assert event["envelope"]["run_id"] == run.run_id
        assert event["subject"].startswith(f"sf.ev.{run.run_id}.")
    seqs = [e["stream_seq"] for e in events]
    assert seqs == sorted(seqs)
    types = [e["envelope"]["body"]["type"] for e in events]
    assert types[0] == "RunSubmitted" and types[-1] == "RunCompleted"
    assert types.count("JobCompleted") == 3

    cli = run_cli(["events", run.run_id, "--json"], sf_env)
    assert cli.returncode == 0, cli.stderr
    expected = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [e["envelope"]["event_id"] for e in events] == [e["event_id"] for e in expected]
    # an invalid envelope is caught by the same schema
    broken = dict(events[0]["envelope"], body={"type": "NoSuchEvent"})
    assert not validator.is_valid(broken)
