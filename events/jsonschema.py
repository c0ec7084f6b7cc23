"""JSON Schema of the event log's public interface (``streamflow schema events``).

Programs in any language can subscribe to ``sf.ev.>`` with a plain NATS client, decode the
MessagePack payload and validate it against this schema: the envelope, whose ``body`` is
one of the events, selected by its ``type`` field.
"""

from __future__ import annotations

import inspect
from typing import Any

import msgspec

from events.schema import SCHEMA_VERSION, Envelope

__all__ = ["events_schema"]


def events_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the envelope and every event."""
    schema: dict[str, Any] = msgspec.json.schema(Envelope)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "StreamFlow event envelope"
    schema["description"] = (
        "Every message on subjects sf.ev.<run>.<aggregate>[.<id>] of the SF_EVENTS stream is a "
        "MessagePack-encoded envelope; 'body.type' names the event."
    )
    schema["x-schema-version"] = SCHEMA_VERSION
    cleaned: dict[str, Any] = _clean_descriptions(schema)
    return cleaned


def _clean_descriptions(node: Any) -> Any:
    """Dedent every ``description`` the same way whatever msgspec version wrote it.

    msgspec up to 0.22 copies docstrings verbatim, 0.23 dedents them: the published schema
    (and ``docs/events.schema.json``) must not depend on which one is installed.
    """
    if isinstance(node, dict):
        return {key: inspect.cleandoc(value) if key == "description" and isinstance(value, str)
                else _clean_descriptions(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_clean_descriptions(item) for item in node]
    return node
