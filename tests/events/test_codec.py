"""The event codec: round trips of every event type, ids, decode errors, upcasters, builtin subclasses."""

from __future__ import annotations

import inspect
import random
import string
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString, SingleQuotedScalarString

from events import codec
from events.codec import UPCASTERS, decode, decode_body, encode, encode_body, event_id, event_type
from events.schema import Envelope, Event, EventBody, RunCancelled, RunFailed, RunSubmitted, TokenEmitted
from streamflow.errors import EventDecodeError

SEEDS = range(6)
EVENT_TYPES: list[mi.StructType] = list(mi.type_info(EventBody).types)  # type: ignore[attr-defined]


def _rand_str(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "_-./ $é漢\n"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


def _rand_json(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-like value (what CWL values are)."""
    kinds = ["none", "bool", "int", "float", "str"] + (["list", "dict", "file"] if depth < 3 else [])
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.randint(-(2**53), 2**53)
    if kind == "float":
        return rng.uniform(-1e9, 1e9)
    if kind == "str":
        return _rand_str(rng)
    if kind == "list":
        return [_rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if kind == "file":
        return {"class": "File", "path": "/" + _rand_str(rng), "size": rng.randint(0, 10**9),
                "checksum": "sha1$" + "".join(rng.choice("0123456789abcdef") for _ in range(40))}
    return {_rand_str(rng): _rand_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _rand_value(t: mi.Type, rng: random.Random) -> Any:
    """A random value of a msgspec type, as described by ``msgspec.inspect``."""
    if isinstance(t, mi.StrType):
        return _rand_str(rng)
    if isinstance(t, mi.BoolType):
        return rng.random() < 0.5
    if isinstance(t, mi.IntType):
        return rng.randint(-(2**62), 2**62)
    if isinstance(t, mi.FloatType):
        return rng.choice([0.0, -1.5, rng.uniform(-1e12, 1e12)])
    if isinstance(t, mi.NoneType):
        return None
    if isinstance(t, mi.AnyType):
        return _rand_json(rng)
    if isinstance(t, mi.UnionType):
        return _rand_value(rng.choice(t.types), rng)
    if isinstance(t, mi.LiteralType):
        return rng.choice(t.values)
    if isinstance(t, mi.ListType | mi.VarTupleType | mi.SetType | mi.FrozenSetType):
        return [_rand_value(t.item_type, rng) for _ in range(rng.randint(0, 4))]
    if isinstance(t, mi.DictType):
        return {_rand_value(t.key_type, rng): _rand_value(t.value_type, rng) for _ in range(rng.randint(0, 4))}
    if isinstance(t, mi.StructType):
        return _build(t, rng)
    raise AssertionError(f"the property test does not know how to build {t!r}: extend _rand_value")


def _build(t: mi.StructType, rng: random.Random) -> Any:
    """An instance of a struct with every field (required or not) set to a random value."""
    kwargs = {f.name: _rand_value(f.type, rng) for f in t.fields if f.required or rng.random() < 0.8}
    return t.cls(**kwargs)


def _cases() -> list[Any]:
    return [pytest.param(t, seed, id=f"{t.cls.__name__}-seed{seed}") for t in EVENT_TYPES for seed in SEEDS]


@pytest.mark.parametrize(("struct", "seed"), _cases())
def test_every_event_type_round_trips_through_msgpack_and_json(struct: mi.StructType, seed: int) -> None:
    """A randomly filled event of every type survives encode/decode (MessagePack and JSON) unchanged."""
    rng = random.Random(f"{struct.cls.__name__}:{seed}")
    body = _build(struct, rng)
    envelope = Envelope(event_id=event_id("r1", "step.s1", event_type(body), str(seed)), run_id="r1",
                        producer=_rand_str(rng), body=body, causation_id=rng.choice([None, "c" * 32]),
                        epoch=rng.randint(0, 2**31), occurred_at=rng.randint(0, 2**62))
    assert decode(encode(envelope)) == envelope
    assert msgspec.json.decode(codec.to_json(envelope), type=Envelope) == envelope
    assert decode_body(encode_body(body)) == body
    assert msgspec.convert(codec.to_builtins(envelope), Envelope) == envelope
    assert codec.to_builtins(envelope)["body"]["type"] == event_type(body) == struct.tag


def test_every_event_type_has_a_distinct_explicit_tag() -> None:
    """Every event is frozen, keyword-only, tagged on ``type`` with a unique tag that is not left to default."""
    tags = [t.tag for t in EVENT_TYPES]
    assert len(tags) == len(set(tags))
    for t in EVENT_TYPES:
        assert issubclass(t.cls, Event)
        assert t.tag_field == "type"
        assert t.cls.__struct_config__.frozen
        params = inspect.signature(t.cls).parameters.values()
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), t.cls
        assert not t.forbid_unknown_fields and not t.array_like


def test_event_id_is_deterministic_and_depends_on_every_component() -> None:
    """The same (run, aggregate, kind, key) always hashes to the same 32-hex id; any change gives another."""
    base = ("r1", "port.p1", "TokenEmitted", "0.1/0")
    first = event_id(*base)
    assert first == event_id(*base)
    assert len(first) == 32 and all(c in "0123456789abcdef" for c in first)
    variants = {event_id(*base[:i], base[i] + "x", *base[i + 1:]) for i in range(4)}
    assert first not in variants and len(variants) == 4
    # The separator keeps component boundaries: ("ab", "c") and ("a", "bc") differ.
    assert event_id("ab", "c", "K") != event_id("a", "bc", "K")


def _raw_envelope(body: dict[str, Any]) -> bytes:
    return msgspec.msgpack.encode({"event_id": "e1", "run_id": "r1", "producer": "test", "body": body})


def test_unknown_event_tag_raises_event_decode_error() -> None:
    """An envelope whose body has a tag this version does not know fails with EventDecodeError naming it."""
    with pytest.raises(EventDecodeError, match="NoSuchEvent"):
        decode(_raw_envelope({"type": "NoSuchEvent", "x": 1}))
    with pytest.raises(EventDecodeError):
        decode_body(msgspec.msgpack.encode({"type": "NoSuchEvent"}))


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="empty"),
    pytest.param(b"\xc1\xc1\xc1", id="invalid-msgpack"),
    pytest.param(b"not msgpack at all", id="text"),
    pytest.param(msgspec.msgpack.encode(42), id="not-a-map"),
    pytest.param(msgspec.msgpack.encode({"event_id": "e"}), id="missing-fields"),
    pytest.param(_raw_envelope({"type": "RunFailed"}), id="missing-required-body-field"),
    pytest.param(_raw_envelope({"type": "StepTerminated", "fired": "many"}), id="wrong-field-type"),
])
def test_corrupt_bytes_raise_event_decode_error(data: bytes) -> None:
    """Corrupt, truncated or ill-typed payloads raise EventDecodeError, never a raw msgspec error."""
    with pytest.raises(EventDecodeError):
        decode(data)


def test_truncated_envelope_raises_event_decode_error() -> None:
    """A valid envelope cut short anywhere fails with EventDecodeError."""
    data = encode(Envelope(event_id="e", run_id="r", producer="p", body=RunFailed(error="boom", step="/s")))
    for cut in (1, len(data) // 2, len(data) - 1):
        with pytest.raises(EventDecodeError):
            decode(data[:cut])


def test_registered_upcaster_rewrites_an_old_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old tag listed in UPCASTERS is rewritten into the current event on decode."""
    seen: list[dict[str, Any]] = []

    def upcast(body: dict[str, Any]) -> dict[str, Any]:
        seen.append(body)
        return {"type": "RunCancelled", "reason": f"legacy: {body['why']}"}

    monkeypatch.setitem(UPCASTERS, "RunAborted", upcast)
    decoded = decode(_raw_envelope({"type": "RunAborted", "why": "ctrl-c"}))
    assert decoded.body == RunCancelled(reason="legacy: ctrl-c")
    assert decoded.run_id == "r1" and decoded.event_id == "e1"
    assert seen == [{"type": "RunAborted", "why": "ctrl-c"}]


def test_upcaster_producing_an_invalid_event_raises_event_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upcaster whose result is not a valid current event is reported as EventDecodeError."""
    monkeypatch.setitem(UPCASTERS, "RunAborted", lambda body: {"type": "RunFailed"})
    with pytest.raises(EventDecodeError, match="RunAborted"):
        decode(_raw_envelope({"type": "RunAborted"}))


def test_upcasters_are_left_as_they_were() -> None:
    """No test leaks an upcaster into the codec's table (monkeypatch removes them)."""
    assert "RunAborted" not in UPCASTERS


def test_builtin_subclasses_from_ruamel_yaml_encode_as_builtins() -> None:
    """ruamel.yaml scalar strings, CommentedMap/Seq and scalar numbers encode as plain builtins."""
    loaded = YAML().load('a: "dq"\nb: |\n  lit\nc: 1.5e3\nd: 0x1F\ne: [1, {f: g}]\nh: 007\n')
    assert isinstance(loaded, CommentedMap) and isinstance(loaded["e"], CommentedSeq)
    inputs = {"loaded": loaded, "dq": DoubleQuotedScalarString("x"), "sq": SingleQuotedScalarString("y")}
    body = RunSubmitted(name=LiteralScalarString("wf\n"), workflow=DoubleQuotedScalarString("/w.cwl"),
                        inputs=inputs, steps=CommentedMap([("s0", SingleQuotedScalarString("/a"))]))
    envelope = Envelope(event_id="e", run_id="r", producer="p", body=body)
    decoded = decode(encode(envelope)).body
    assert isinstance(decoded, RunSubmitted)
    assert decoded.name == "wf\n" and type(decoded.name) is str
    assert decoded.steps == {"s0": "/a"}
    assert decoded.inputs == {"loaded": {"a": "dq", "b": "lit\n", "c": 1500.0, "d": 31, "e": [1, {"f": "g"}],
                                         "h": 7}, "dq": "x", "sq": "y"}
    assert type(decoded.inputs["loaded"]["c"]) is float and type(decoded.inputs["loaded"]["d"]) is int
    token = TokenEmitted(tag="0", value=CommentedSeq([LiteralScalarString("z")]))
    assert decode_body(encode_body(token)) == TokenEmitted(tag="0", value=["z"])
    assert msgspec.json.decode(codec.to_json(token)) == {"type": "TokenEmitted", "tag": "0", "value": ["z"],
                                                         "producer": "", "job": None, "inputs": [], "gen": 0}


def test_anchored_yaml_boolean_encodes_as_a_boolean() -> None:
    """A YAML boolean with an anchor (ruamel's ScalarBoolean, an int subclass) stays a boolean, not 1."""
    loaded = YAML().load("flag: &f true\nother: *f\noff: &g false\n")
    body = TokenEmitted(tag="0", value=loaded)
    decoded = decode_body(encode_body(body))
    assert isinstance(decoded, TokenEmitted)
    assert decoded.value == {"flag": True, "other": True, "off": False}
    assert all(type(v) is bool for v in decoded.value.values())


def test_unencodable_objects_are_refused() -> None:
    """Objects that are not JSON-like (e.g. a set of objects, a class) cannot be encoded."""
    with pytest.raises(NotImplementedError):
        codec.enc_hook(object())
    with pytest.raises((TypeError, NotImplementedError)):
        encode_body(TokenEmitted(tag="0", value=object()))
