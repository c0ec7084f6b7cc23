"""Building the command line of a CommandLineTool from its bindings (CWL v1.2 "Input binding").

Every binding (``arguments`` entries, input ``inputBinding``s, nested array item and record
field bindings) becomes a fragment with a sort key. Top-level keys are ``[position, index]``
for arguments and ``[position, name]`` for inputs; nested bindings extend the key of the
binding that contains them. Keys compare element by element with numbers before names.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.cwl.types import SchemaIndex, TypeMismatch, check_value
from streamflow.cwl.utils import is_directory, is_file, shortname
from streamflow.errors import JobFailedError

__all__ = ["CommandPart", "build_command_line", "join_shell", "to_argument"]

SortKey = tuple[tuple[int, int | float | str], ...]


@dataclass(frozen=True)
class CommandPart:
    """One word of the command line; ``quote`` is False for ``shellQuote: false`` bindings."""

    text: str
    quote: bool = True


def to_argument(value: Any) -> str:
    """Render a scalar for the command line (paths for files, decimals for floats)."""
    if is_file(value) or is_directory(value):
        return str(value.get("path") or value.get("location"))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return text
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, sort_keys=True)


def join_shell(parts: list[CommandPart]) -> str:
    """Join parts into one shell line, quoting those that ask for it."""
    return " ".join(shlex.quote(p.text) if p.quote else p.text for p in parts)


def _flatten_words(values: list[Any]) -> list[str]:
    words: list[str] = []
    for v in values:
        if isinstance(v, list):
            words.extend(_flatten_words(v))
        elif isinstance(v, Mapping) and not (is_file(v) or is_directory(v)):
            continue
        elif v is not None:
            words.append(to_argument(v))
    return words


def _key_item(value: Any) -> tuple[int, int | float | str]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


class _Builder:
    def __init__(
        self,
        inputs: Mapping[str, Any],
        evaluator: ExpressionEvaluator,
        runtime: Mapping[str, Any],
        index: SchemaIndex,
    ) -> None:
        self.inputs = inputs
        self.evaluator = evaluator
        self.runtime = runtime
        self.index = index
        self.fragments: list[tuple[SortKey, list[CommandPart]]] = []

    def _eval(self, expr: Any, self_: Any) -> Any:
        return self.evaluator.evaluate(expr, self.inputs, self_=self_, runtime=self.runtime)

    def position(self, binding: Mapping[str, Any], self_: Any) -> int | float:
        pos = binding.get("position")
        if has_expression(pos):
            pos = self._eval(pos, self_)
        if pos is None:
            return 0
        if isinstance(pos, bool) or not isinstance(pos, int | float):
            raise JobFailedError(f"inputBinding position must be an int, got {pos!r}")
        return pos

    def argument(self, index: int, arg: Any) -> None:
        if isinstance(arg, str):
            binding: Mapping[str, Any] = {"valueFrom": arg}
        else:
            binding = arg
        key: SortKey = (_key_item(self.position(binding, None)), _key_item(index))
        value = self._eval(binding.get("valueFrom"), None) if "valueFrom" in binding else None
        self.emit(key, binding, value, nested=None)

    def parameter(self, key: SortKey, t: Any, binding: Mapping[str, Any] | None, value: Any) -> None:
        """Bind ``value`` of type ``t`` whose own binding is ``binding`` at sort key ``key``."""
        t = self._select(t, value)
        if binding is not None:
            if value is None:
                return
            if "valueFrom" in binding:
                value = self._eval(binding["valueFrom"], value)
                self.emit(key, binding, value, nested=None)
                return
            self.emit(key, binding, value, nested=t)
        self.nested(key, t, value)

    def _select(self, t: Any, value: Any) -> Any:
        t = self.index.resolve(t)
        if isinstance(t, list):
            for alternative in t:
                try:
                    check_value(value, alternative, "", self.index, {})
                except TypeMismatch:
                    continue
                return self.index.resolve(alternative)
        if isinstance(t, Mapping) and not isinstance(t.get("type"), str):
            return self._select(t.get("type"), value)
        return t

    def _item_binding(self, t: Any) -> Mapping[str, Any] | None:
        """The binding applying to each element of an array type, if any."""
        if not isinstance(t, Mapping) or t.get("type") != "array":
            return None
        if isinstance(t.get("inputBinding"), Mapping):
            return t["inputBinding"]  # type: ignore[no-any-return]
        items = self.index.resolve(t.get("items"))
        if isinstance(items, Mapping) and isinstance(items.get("inputBinding"), Mapping):
            return items["inputBinding"]  # type: ignore[no-any-return]
        return None

    def _has_nested(self, t: Any) -> bool:
        if not isinstance(t, Mapping):
            return False
        if t.get("type") == "array":
            if self._item_binding(t) is not None:
                return True
            items = self.index.resolve(t.get("items"))
            alternatives = items if isinstance(items, list) else [items]
            return any(
                isinstance(a, Mapping)
                and (a.get("type") == "record" or isinstance(a.get("inputBinding"), Mapping))
                for a in (self.index.resolve(x) for x in alternatives)
            )
        return t.get("type") == "record"

    def nested(self, key: SortKey, t: Any, value: Any) -> None:
        if not isinstance(t, Mapping) or value is None:
            return
        if t.get("type") == "array" and isinstance(value, list):
            item_binding = self._item_binding(t)
            items_t = t.get("items")
            if isinstance(t.get("inputBinding"), Mapping):
                # The array schema's own binding applies to every element.
                for n, item in enumerate(value):
                    sub = (*key, _key_item(self.position(item_binding or {}, item)), _key_item(n))
                    self.parameter(sub, items_t, item_binding, item)
                return
            for n, item in enumerate(value):
                item_t = self._select(items_t, item)
                own = item_t.get("inputBinding") if isinstance(item_t, Mapping) else None
                pos = self.position(own, item) if isinstance(own, Mapping) else 0
                sub = (*key, _key_item(pos), _key_item(n))
                if isinstance(own, Mapping):
                    self.parameter(sub, item_t, own, item)
                else:
                    self.nested(sub, item_t, item)
        elif t.get("type") == "record" and isinstance(value, Mapping):
            for field in t.get("fields") or []:
                name = shortname(str(field.get("name")))
                fb = field.get("inputBinding")
                fv = value.get(name)
                pos = self.position(fb, fv) if isinstance(fb, Mapping) else 0
                self.parameter((*key, _key_item(pos), _key_item(name)), field.get("type"), fb, fv)

    def emit(self, key: SortKey, binding: Mapping[str, Any], value: Any, *, nested: Any) -> None:
        prefix = binding.get("prefix")
        separate = binding.get("separate", True) is not False
        separator = binding.get("itemSeparator")
        quote = binding.get("shellQuote", True) is not False
        words: list[str]
        if isinstance(value, list):
            if not value:
                return
            flat = _flatten_words(value)
            if separator is not None:
                words = [str(separator).join(flat)]
            elif nested is not None and self._has_nested(nested):
                words = []
            else:
                words = flat
        elif is_file(value) or is_directory(value):
            words = [to_argument(value)]
        elif isinstance(value, Mapping):
            words = []
        elif isinstance(value, bool):
            if value and prefix is not None:
                self.fragments.append((key, [CommandPart(str(prefix), quote)]))
            return
        elif value is None:
            return
        else:
            words = [to_argument(value)]
        parts: list[CommandPart] = []
        if prefix is not None:
            prefix = str(prefix)
            if not words:
                parts.append(CommandPart(prefix, quote))
            elif separate:
                parts.append(CommandPart(prefix, quote))
                parts.append(CommandPart(words[0], quote))
                parts.extend(CommandPart(w, quote) for w in words[1:])
            else:
                parts.append(CommandPart(prefix + words[0], quote))
                parts.extend(CommandPart(w, quote) for w in words[1:])
        else:
            parts.extend(CommandPart(w, quote) for w in words)
        if parts:
            self.fragments.append((key, parts))


def build_command_line(
    process_view: Mapping[str, Any],
    inputs: Mapping[str, Any],
    *,
    evaluator: ExpressionEvaluator,
    runtime: Mapping[str, Any],
    index: SchemaIndex,
) -> list[CommandPart]:
    """Build the command line of a CommandLineTool.

    Args:
        process_view: the plain view of the tool.
        inputs: the validated (and staged) input object.
        evaluator: evaluates ``valueFrom``, ``position`` and argument expressions.
        runtime: the ``runtime`` object.
        index: the named types in scope.

    Returns:
        ``baseCommand`` followed by the sorted bindings.
    """
    builder = _Builder(inputs, evaluator, runtime, index)
    for i, arg in enumerate(process_view.get("arguments") or []):
        builder.argument(i, arg)
    for param in process_view.get("inputs") or []:
        name = shortname(str(param["id"]))
        binding = param.get("inputBinding")
        value = inputs.get(name)
        if isinstance(binding, Mapping):
            key: SortKey = (_key_item(builder.position(binding, value)), _key_item(name))
            builder.parameter(key, param.get("type"), binding, value)
        else:
            builder.parameter((), param.get("type"), None, value)
    builder.fragments.sort(key=lambda fragment: fragment[0])
    base = process_view.get("baseCommand") or []
    if isinstance(base, str):
        base = [base]
    result = [CommandPart(str(word)) for word in base]
    for _, parts in builder.fragments:
        result.extend(parts)
    return result
