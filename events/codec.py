"""One codec for the event log: msgspec MessagePack on the wire, JSON for humans.

Encoders and decoders are built once at import time and reused (msgspec's own advice).
An event whose tag this version does not know raises :class:`~streamflow.errors.EventDecodeError`
unless it is listed in :data:`UPCASTERS`, which rewrites old payloads into current ones.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from events.schema import Envelope, Event, EventBody
from streamflow.errors import EventDecodeError

__all__ = [
    "UPCASTERS",
    "decode",
    "decode_body",
    "enc_hook",
    "encode",
    "encode_body",
    "event_id",
    "event_type",
    "to_builtins",
    "to_json",
]

def _is_yaml_bool(obj: Any) -> bool:
    # ruamel.yaml loads an anchored boolean (``&a true``) as ScalarBoolean, an *int*
    # subclass (bool cannot be subclassed); matched by name so ``events`` stays a leaf.
    return isinstance(obj, int) and any(c.__name__ == "ScalarBoolean" for c in type(obj).__mro__)


def enc_hook(obj: Any) -> Any:
    """Encode subclasses of builtins (e.g. ruamel.yaml's scalar strings) as the builtin."""
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, bool) or _is_yaml_bool(obj):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, list | tuple):
        return list(obj)
    raise NotImplementedError(f"cannot encode objects of type {type(obj).__name__}")


_encoder = msgspec.msgpack.Encoder(enc_hook=enc_hook)
_decoder = msgspec.msgpack.Decoder(Envelope)
_raw_decoder = msgspec.msgpack.Decoder(dict[str, Any])
_body_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder(EventBody)
_json_encoder = msgspec.json.Encoder(enc_hook=enc_hook)

#: tag -> function rewriting an old raw payload (a dict) into a current one.
UPCASTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def encode(envelope: Envelope) -> bytes:
    """Encode an envelope to MessagePack."""
    return _encoder.encode(envelope)


def decode(data: bytes) -> Envelope:
    """Decode an envelope, upcasting old event tags.

    Raises:
        EventDecodeError: the payload is corrupt or its event type is unknown.
    """
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        try:
            raw = _raw_decoder.decode(data)
        except msgspec.DecodeError:
            raise EventDecodeError(f"corrupt event payload: {exc}") from exc
        body = raw.get("body")
        tag = body.get("type") if isinstance(body, dict) else None
        upcast = UPCASTERS.get(str(tag))
        if upcast is None or not isinstance(body, dict):
            raise EventDecodeError(f"cannot decode event of type {tag!r}: {exc}") from exc
        raw["body"] = upcast(body)
        try:
            return msgspec.convert(raw, Envelope)
        except msgspec.ValidationError as exc2:
            raise EventDecodeError(f"cannot upcast event of type {tag!r}: {exc2}") from exc2
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"corrupt event payload: {exc}") from exc


def encode_body(body: Event) -> bytes:
    """Encode a bare event body."""
    return _encoder.encode(body)


def decode_body(data: bytes) -> Event:
    """Decode a bare event body."""
    try:
        result: Event = _body_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise EventDecodeError(f"cannot decode event: {exc}") from exc
    return result


def event_type(body: Event) -> str:
    """Return the stable wire name (tag) of an event."""
    return str(type(body).__struct_config__.tag)


def event_id(run_id: str, aggregate: str, kind: str, key: str = "") -> str:
    """Deterministic event id: a hash of run, aggregate, event kind and key (tag, attempt...).

    The same fact always gets the same id, so a retried publish is deduplicated by the
    server (``Nats-Msg-Id``) and by readers.
    """
    digest = hashlib.blake2b(f"{run_id}\x1f{aggregate}\x1f{kind}\x1f{key}".encode(), digest_size=16)
    return digest.hexdigest()


def to_builtins(envelope: Envelope) -> dict[str, Any]:
    """Convert an envelope to plain Python objects (for JSON output)."""
    result: dict[str, Any] = msgspec.to_builtins(envelope)
    return result


def to_json(obj: Any) -> bytes:
    """Encode anything msgspec can encode as JSON."""
    return _json_encoder.encode(obj)
