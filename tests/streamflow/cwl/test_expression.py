"""Expression evaluation: parameter references stay in Python, JavaScript goes to Node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cwl_utils.sandboxjs import NodeJSEngine, get_js_engine, set_js_engine

from streamflow.cwl.expression import ExpressionEvaluator, has_expression
from streamflow.errors import JobFailedError

JS = [{"class": "InlineJavascriptRequirement", "expressionLib": ["function twice(x) { return 2 * x; }"]}]


class _CountingEngine(NodeJSEngine):
    """A Node engine that counts the expressions sent to Node."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def eval(self, scan: str, jslib: str = "", **kwargs: Any) -> Any:  # type: ignore[override]
        self.calls += 1
        return super().eval(scan, jslib, **kwargs)


@pytest.fixture
def engine() -> Iterator[_CountingEngine]:
    """Install a counting JS engine for the duration of a test."""
    previous = get_js_engine()
    counting = _CountingEngine()
    set_js_engine(counting)
    try:
        yield counting
    finally:
        set_js_engine(previous)


def test_has_expression() -> None:
    """Only strings with ``$(`` or ``${`` are expressions."""
    assert has_expression("$(inputs.x)")
    assert has_expression("a ${return 1} b")
    assert not has_expression("plain $ text")
    assert not has_expression(3)


def test_parameter_references_do_not_start_node(engine: _CountingEngine) -> None:
    """``$(inputs.x.path)`` is resolved in Python even with InlineJavascriptRequirement."""
    evaluator = ExpressionEvaluator(JS)
    inputs = {"f": {"class": "File", "path": "/data/a.txt"}, "n": [1, 2, 3]}
    assert evaluator.evaluate("$(inputs.f.path)", inputs) == "/data/a.txt"
    assert evaluator.evaluate("-n $(inputs.n.length) $(inputs['f'].path)", inputs) == "-n 3 /data/a.txt"
    assert evaluator.evaluate("$(runtime.cores)", inputs, runtime={"cores": 4}) == 4
    assert engine.calls == 0


def test_javascript_uses_the_expression_lib(engine: _CountingEngine) -> None:
    """JavaScript expressions see inputs, self, runtime and expressionLib functions."""
    evaluator = ExpressionEvaluator(JS)
    assert evaluator.evaluate("$(twice(inputs.x) + self)", {"x": 5}, self_=1) == 11
    assert evaluator.evaluate("${ return runtime.outdir + '/x'; }", {}, runtime={"outdir": "/o"}) == "/o/x"
    assert engine.calls == 2


def test_javascript_without_requirement_is_an_error() -> None:
    """Without InlineJavascriptRequirement only parameter references are allowed."""
    with pytest.raises(JobFailedError, match="expression '\\$\\(1 \\+ 1\\)' failed"):
        ExpressionEvaluator([]).evaluate("$(1 + 1)", {})


def test_javascript_errors_become_job_failures() -> None:
    """A throwing expression raises a non-retryable JobFailedError."""
    with pytest.raises(JobFailedError) as info:
        ExpressionEvaluator(JS).evaluate("${ throw new Error('boom'); }", {})
    assert not info.value.retryable


def test_escapes_follow_the_document_version() -> None:
    """``\\$(`` escapes a reference in v1.1+; v1.0 drops the backslash differently."""
    assert ExpressionEvaluator([]).evaluate("\\$(inputs.x)", {"x": 1}) == "$(inputs.x)"
    assert ExpressionEvaluator([], "v1.0").evaluate("\\\\$(inputs.x)", {"x": 1}) == "\\1"
