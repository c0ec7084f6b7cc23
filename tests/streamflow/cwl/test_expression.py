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


class _RecordingEngine(NodeJSEngine):
    """An engine that answers every JavaScript expression with its own text (no Node)."""

    def eval(self, scan: str, jslib: str = "", **kwargs: Any) -> Any:  # type: ignore[override]
        return {"js": scan}


@pytest.mark.parametrize(
    "text",
    [
        "$(inputs.x)",
        "  $(inputs.x)  ",
        "a $(inputs.x) b $(inputs.y) c",
        "$(inputs.x)$(inputs.y)",
        "$(inputs.y)",
        "${ return {'a': [1, 2]}; }",
        "pre ${ return 'in' + \"side\"; } post",
        "$(inputs.x.length) and $(inputs['y'])",
        "\\$(inputs.x) $(inputs.x)",
        "\\\\$(inputs.x)",
        "a \\ b \\\\ c \\${x} $(inputs.x)",
        "trailing backslash \\",
        "$(inputs.x) \\",
        "$ (inputs.x) $x ${",
        "$(inputs.z)",
        "$(null)",
    ],
)
@pytest.mark.parametrize("version", ["v1.0", "v1.2"])
def test_cached_tokenisation_matches_cwl_utils(text: str, version: str) -> None:
    """Splitting expressions once per string gives exactly cwl-utils' ``interpolate`` results."""
    from cwl_utils.errors import JavascriptException, SubstitutionError, WorkflowException
    from cwl_utils.expression import OLD_ESCAPE_CWL_VERSIONS, interpolate

    previous = get_js_engine()
    set_js_engine(_RecordingEngine())
    try:
        inputs = {"x": [1, 2, 3], "y": {"k": "v"}, "z": None}
        rootvars = {"inputs": inputs, "self": None, "runtime": {}}
        try:
            expected: Any = interpolate(
                text, rootvars, fullJS=True, escaping_behavior=1 if version in OLD_ESCAPE_CWL_VERSIONS else 2,
                js_engine=_RecordingEngine(),
            )
        except (JavascriptException, SubstitutionError, WorkflowException) as exc:
            expected = exc
        evaluator = ExpressionEvaluator(JS, version)
        if isinstance(expected, Exception):
            with pytest.raises(JobFailedError):
                evaluator.evaluate(text, inputs)
        else:
            for _ in range(2):  # the second time from the cache
                assert evaluator.evaluate(text, inputs) == expected
    finally:
        set_js_engine(previous)


def test_every_javascript_expression_gets_a_fresh_context() -> None:
    """What one expression leaves in its global scope is gone for the next, however many run."""
    evaluator = ExpressionEvaluator(JS)
    for n in range(12):  # more than the contexts Node keeps ready
        assert evaluator.evaluate("${ var seen = typeof leaked; globalThis.leaked = 1; return seen; }", {}) == (
            "undefined"
        )
        assert evaluator.evaluate("$(twice(inputs.n))", {"n": n}) == 2 * n


def test_javascript_results_and_failures_cross_the_pipe_intact() -> None:
    """Large and non-ASCII results come back whole; errors and undefined are failures."""
    evaluator = ExpressionEvaluator(JS)
    big = "x" * 200_000
    assert evaluator.evaluate("$(inputs.s + 'é\\n✓')", {"s": big}) == big + "é\n✓"
    assert evaluator.evaluate("${ return [1, null, {'a': true}]; }", {}) == [1, None, {"a": True}]
    for bad in ("${ return undefined; }", "${ throw new Error('boom'); }", "$(inputs.a.b.c)", "$(1n)"):
        with pytest.raises(JobFailedError):
            evaluator.evaluate(bad, {"a": None})
    assert evaluator.evaluate("$(twice(21))", {}) == 42  # the engine is still usable
