"""CWL type checking for input and output values.

Types are the plain views produced by :func:`streamflow.cwl.utils.plain`: a primitive name
(``"int"``, ``"File"``, ``"Any"``...), the absolute name of a named schema, a list (a union)
or a dict (``array``, ``record`` or ``enum`` schema).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streamflow.cwl.utils import Requirements, describe_value, shortname

__all__ = [
    "BUILTIN_TYPES", "FileSlot", "SchemaIndex", "TypeMismatch", "check_value", "decidable", "inline_named", "type_name",
]


class TypeMismatch(Exception):
    """A value does not match a type; ``where`` locates it, ``reason`` explains it."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason


@dataclass
class FileSlot:
    """A File or Directory value found while checking, with the parameter (or field) it belongs to."""

    value: dict[str, Any]
    spec: Mapping[str, Any]
    where: str


class SchemaIndex:
    """Named types (``SchemaDefRequirement`` and inline named records/enums) by absolute name.

    Args:
        requirements: the effective requirements (for ``SchemaDefRequirement``).
        params: parameter lists whose inline named types should also be indexed.
    """

    def __init__(self, requirements: Requirements, params: Iterable[Mapping[str, Any]] = ()) -> None:
        self.named: dict[str, Any] = {}
        schema_def = requirements.get("SchemaDefRequirement")
        for entry in (schema_def or {}).get("types") or []:
            self._index(entry)
        for param in params:
            self._index(param.get("type"))

    def _index(self, t: Any) -> None:
        if isinstance(t, list):
            for item in t:
                self._index(item)
        elif isinstance(t, Mapping):
            name = t.get("name")
            if isinstance(name, str) and t.get("type") in ("record", "enum", "array"):
                self.named.setdefault(name, t)
            for f in t.get("fields") or []:
                self._index(f.get("type"))
            self._index(t.get("items"))

    def resolve(self, t: Any) -> Any:
        """Return the definition of a named type, or ``t`` itself."""
        if isinstance(t, str) and t in self.named:
            return self.named[t]
        if isinstance(t, str) and "#" in t:
            short = t.split("#", 1)[1]
            for name, definition in self.named.items():
                if name.split("#", 1)[-1] == short:
                    return definition
            # A name used inside an embedded process is scoped by the parser to that
            # process (``#step/item``, ``#step/run/item``): the type is the enclosing scope's.
            scope = short.split("/")
            while len(scope) > 1:
                del scope[-2]
                wanted = "/".join(scope)
                for name, definition in self.named.items():
                    if name.split("#", 1)[-1] == wanted:
                        return definition
        return t


BUILTIN_TYPES = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "string", "File", "Directory", "Any"}
    | {"stdin", "stdout", "stderr"}
)
"""The CWL type names that need no definition."""


def inline_named(t: Any, index: SchemaIndex, _seen: frozenset[str] = frozenset()) -> Any:
    """Return ``t`` with every named type replaced by its definition (recursively).

    A name that cannot be resolved, or that refers to itself (a recursive record), stays a
    name: :func:`decidable` then tells that the type cannot be checked on its own.
    """
    if isinstance(t, list):
        return [inline_named(item, index, _seen) for item in t]
    if isinstance(t, str):
        if t in BUILTIN_TYPES or t in _seen:
            return t
        definition = index.resolve(t)
        if definition is t:
            return t
        return inline_named(definition, index, _seen | {t})
    if isinstance(t, Mapping):
        result = dict(t)
        if "items" in result:
            result["items"] = inline_named(result["items"], index, _seen)
        if isinstance(result.get("fields"), list):
            result["fields"] = [
                {**f, "type": inline_named(f.get("type"), index, _seen)} if isinstance(f, Mapping) else f
                for f in result["fields"]
            ]
        if isinstance(result.get("type"), list | Mapping) or (
            isinstance(result.get("type"), str) and result["type"] not in ("record", "enum", "array")
        ):
            result["type"] = inline_named(result["type"], index, _seen)
        return result
    return t


def decidable(t: Any) -> bool:
    """Whether a (inlined) type names nothing but built-in types and inline definitions."""
    if isinstance(t, list):
        return all(decidable(item) for item in t)
    if isinstance(t, str):
        return t in BUILTIN_TYPES or t in ("record", "enum", "array")
    if isinstance(t, Mapping):
        kind = t.get("type")
        if kind == "array":
            return decidable(t.get("items"))
        if kind == "record":
            return all(decidable(f.get("type")) for f in t.get("fields") or [] if isinstance(f, Mapping))
        if kind == "enum":
            return True
        return decidable(kind)
    return False


def enum_symbols(t: Mapping[str, Any]) -> list[str]:
    """Return the short symbols of an enum schema."""
    name = str(t.get("name") or "")
    result = []
    for symbol in t.get("symbols") or []:
        s = str(symbol)
        if name and s.startswith(name + "/"):
            result.append(s[len(name) + 1 :])
        elif "#" in s:
            result.append(shortname(s))
        else:
            result.append(s)
    return result


def type_name(t: Any, index: SchemaIndex | None = None) -> str:
    """Render a type for messages: ``int``, ``File[]``, ``string?``, ``enum(a|b)``, ``record{x,y}``."""
    if isinstance(t, str):
        if index is not None and t in index.named:
            return shortname(t)
        return shortname(t) if "#" in t else t
    if isinstance(t, list):
        non_null = [x for x in t if x != "null"]
        if len(non_null) == 1 and len(t) == 2:
            return type_name(non_null[0], index) + "?"
        return " | ".join(type_name(x, index) for x in t)
    if isinstance(t, Mapping):
        match t.get("type"):
            case "array":
                return type_name(t.get("items"), index) + "[]"
            case "enum":
                return "enum(" + "|".join(enum_symbols(t)) + ")"
            case "record":
                return (
                    "record{" + ",".join(shortname(str(f.get("name"))) for f in t.get("fields") or []) + "}"
                )
    return str(t)


def _primitive_ok(name: str, value: Any) -> bool:
    match name:
        case "null":
            return value is None
        case "boolean":
            return isinstance(value, bool)
        case "int" | "long":
            return isinstance(value, int) and not isinstance(value, bool)
        case "float" | "double":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "string":
            return isinstance(value, str)
        case "Any":
            return value is not None
        case "File" | "Directory":
            return isinstance(value, Mapping) and value.get("class") == name
    return False


@dataclass
class _Checker:
    index: SchemaIndex
    slots: list[FileSlot] = field(default_factory=list)
    null_any: bool = False

    def check(self, value: Any, t: Any, where: str, spec: Mapping[str, Any]) -> Any:
        t = self.index.resolve(t)
        if isinstance(t, list):
            return self._union(value, t, where, spec)
        if isinstance(t, str):
            if t in ("stdout", "stderr", "stdin"):
                t = "File"
            if value is None and t == "Any" and self.null_any:
                return None
            if not _primitive_ok(t, value):
                if value is None:
                    raise TypeMismatch(where, f"missing required value (expected {type_name(t, self.index)})")
                raise TypeMismatch(where, f"expected {type_name(t, self.index)}, got {describe_value(value)}")
            if t in ("File", "Directory"):
                copy = dict(value)
                self.slots.append(FileSlot(copy, spec, where))
                return copy
            if t == "Any" and isinstance(value, Mapping | list):
                return self._any(value, where, spec)
            return value
        if isinstance(t, Mapping):
            kind = t.get("type")
            if kind == "array":
                if not isinstance(value, list):
                    raise TypeMismatch(
                        where, f"expected {type_name(t, self.index)}, got {describe_value(value)}"
                    )
                return [self.check(v, t.get("items"), f"{where}[{i}]", spec) for i, v in enumerate(value)]
            if kind == "enum":
                symbols = enum_symbols(t)
                if not isinstance(value, str) or value not in symbols:
                    raise TypeMismatch(where, f"expected one of {symbols}, got {describe_value(value)}")
                return value
            if kind == "record":
                if not isinstance(value, Mapping) or value.get("class") in ("File", "Directory"):
                    raise TypeMismatch(
                        where, f"expected {type_name(t, self.index)}, got {describe_value(value)}"
                    )
                result = {}
                for f in t.get("fields") or []:
                    name = shortname(str(f.get("name")))
                    checked = self.check(value.get(name), f.get("type"), f"{where}.{name}", f)
                    if checked is not None or name in value:
                        result[name] = checked
                return result
            if isinstance(kind, str | list | Mapping):
                return self.check(value, kind, where, spec)
        raise TypeMismatch(where, f"unknown type {t!r}")

    def _any(self, value: Any, where: str, spec: Mapping[str, Any]) -> Any:
        if isinstance(value, list):
            return [
                self._any(v, f"{where}[{i}]", spec) if isinstance(v, Mapping | list) else v
                for i, v in enumerate(value)
            ]
        if isinstance(value, Mapping) and value.get("class") in ("File", "Directory"):
            copy = dict(value)
            self.slots.append(FileSlot(copy, {}, where))
            return copy
        return {
            k: self._any(v, f"{where}.{k}", spec) if isinstance(v, Mapping | list) else v
            for k, v in value.items()
        }

    def _union(self, value: Any, alternatives: list[Any], where: str, spec: Mapping[str, Any]) -> Any:
        if value is None and "null" in alternatives:
            return None
        errors = []
        for alternative in alternatives:
            if alternative == "null":
                continue
            mark = len(self.slots)
            try:
                return self.check(value, alternative, where, spec)
            except TypeMismatch as exc:
                del self.slots[mark:]
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if value is None:
            raise TypeMismatch(
                where, f"missing required value (expected {type_name(alternatives, self.index)})"
            )
        raise TypeMismatch(
            where, f"expected {type_name(alternatives, self.index)}, got {describe_value(value)}"
        )


def check_value(
    value: Any, t: Any, where: str, index: SchemaIndex, spec: Mapping[str, Any], *, null_any: bool = False
) -> tuple[Any, list[FileSlot]]:
    """Check ``value`` against type ``t``, returning a normalised copy and its File/Directory slots.

    Args:
        value: the value to check.
        t: the (plain) type.
        where: the name used in messages (``threads``, ``rec.field``, ``files[2]``).
        index: the named types in scope.
        spec: the parameter the value belongs to (its ``secondaryFiles``, ``format``...).
        null_any: let ``Any`` accept null (output parameters: a tool may produce nothing for
            an ``Any`` output, and a step input's ``default`` then applies).

    Returns:
        The checked value (records keep only their declared fields; File/Directory objects are
        copied) and every File/Directory in it, each with the parameter or record field
        that declares it.

    Raises:
        TypeMismatch: the value does not match.
    """
    checker = _Checker(index, null_any=null_any)
    result = checker.check(value, t, where, spec)
    return result, checker.slots
