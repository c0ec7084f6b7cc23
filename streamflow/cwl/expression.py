"""CWL parameter references and JavaScript expressions.

Evaluation follows :mod:`cwl_utils.expression` (its scanner, parameter references and
JavaScript protocol), with one persistent Node.js process per thread. A few things keep it
cheap in a large scatter, where the same expressions are evaluated for every job:

* parameter references (``$(inputs.x.path)``) are resolved in Python and never start Node;
  the plain ones (dotted names and list indices, e.g. ``$(self[0].contents)``) are parsed
  once per distinct string and walked directly, without cwl-utils' regular expressions
  (anything else, and every error, still goes through cwl-utils for its messages);
* where an expression string splits into text and ``$(...)``/``${...}`` parts is worked out
  once per distinct string (cwl-utils' scanner walks it character by character in Python,
  about 0.5 ms for a ten-line ``${...}`` block) and remembered;
* the JavaScript prelude (``expressionLib`` plus the serialised ``inputs``/``self``/``runtime``)
  is only built when an expression actually has to go to Node;
* Node evaluates every expression in a fresh ``vm`` context, as cwl-utils' engine does, but
  creates the next contexts while it waits for work rather than when an expression arrives
  (making one takes about 0.5 ms, several times the evaluation of a typical expression).
"""

from __future__ import annotations

import functools
import json
import os
import re
import select
import shutil
import subprocess
import time
from collections.abc import Mapping
from typing import Any

from cwl_utils.errors import JavascriptException, SubstitutionError, WorkflowException
from cwl_utils.expression import OLD_ESCAPE_CWL_VERSIONS, evaluator, scanner
from cwl_utils.sandboxjs import JSEngine, NodeJSEngine, default_timeout, get_js_engine
from schema_salad.utils import json_dumps

from streamflow.cwl.utils import Requirements
from streamflow.errors import JobFailedError

__all__ = ["ExpressionEvaluator", "has_expression"]


def has_expression(value: Any) -> bool:
    """Return whether ``value`` is a string holding a parameter reference or expression.

    Args:
        value: any CWL value.

    Returns:
        True when ``value`` is a string containing ``$(`` or ``${``.
    """
    return isinstance(value, str) and ("$(" in value or "${" in value)


_ENGINE_KEY = "streamflow-node-engine"
_SPARE_CONTEXTS = 4

# The Node side of the protocol of cwl-utils' ``cwlNodeEngine.js``: one JSON-encoded script
# per line on stdin; its JSON result on stdout (or the error on stderr), then the end marker on
# both streams (stderr first, so that one wake-up usually finds both). Each script runs in a
# context of its own, made beforehand while Node is idle.
_ENGINE_SOURCE = r"""
"use strict";
const vm = require("vm");
const util = require("util");
const MARK = %(mark)s;
const SPARE = %(spare)d;
const spare = [];
let timer = null;
let next = null;
function refill() {
  timer = null;
  next = null;
  spare.push(vm.createContext({}));
  if (spare.length < SPARE) next = setImmediate(refill);
}
function refillWhenIdle() {
  if (timer !== null) clearTimeout(timer);
  if (next !== null) clearImmediate(next);
  next = null;
  timer = spare.length < SPARE ? setTimeout(refill, 1) : null;
}
let incoming = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", function (chunk) {
  incoming += chunk;
  let i;
  while ((i = incoming.indexOf("\n")) > -1) {
    const line = incoming.slice(0, i);
    incoming = incoming.slice(i + 1);
    const context = spare.length ? spare.pop() : vm.createContext({});
    let out = "";
    let err = "";
    try {
      out = JSON.stringify(vm.runInContext(JSON.parse(line), context)) + "\n";
    } catch (e) {
      err = util.format(e) + "\n";
    }
    process.stderr.write(err + MARK);
    process.stdout.write(out + MARK);
  }
  refillWhenIdle();
});
process.stdin.on("end", process.exit);
refillWhenIdle();
"""


class _NodeEngine(NodeJSEngine):
    """cwl-utils' Node.js engine (same script, same protocol), started and read frugally.

    * the Node process of a thread is started directly from ``PATH``, without the two
      extra Node runs (a test script and ``node -v``) the stock engine makes first;
    * an evaluation waits for Node's answer in ``select`` instead of polling a pipe that is
      always writable, which kept a CPU busy for as long as Node took to answer (its whole
      start-up time on the first expression);
    * Node runs :data:`_ENGINE_SOURCE`, which makes the fresh context of the next
      evaluations ahead of time.
    """

    def new_js_proc(  # type: ignore[override]
        self, js_text: str, force_docker_pull: bool = False, container_engine: str = "docker"
    ) -> subprocess.Popen[bytes]:
        node = shutil.which("node") or shutil.which("nodejs")
        if node is None:
            raise JavascriptException("Node.js ('node' on PATH) is needed to evaluate JavaScript expressions")
        proc = subprocess.Popen(
            [node, "--eval", js_text], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self.processes_to_kill.append(proc)  # type: ignore[arg-type]
        return proc

    def exec_js_process(
        self,
        js_text: str,
        timeout: float = default_timeout,
        js_console: bool = False,
        context: str | None = None,
        force_docker_pull: bool = False,
        container_engine: str = "docker",
    ) -> tuple[int, str, str]:
        if js_console or context is not None:
            return super().exec_js_process(js_text, timeout, js_console, context, force_docker_pull, container_engine)
        procs = getattr(self.localdata, "procs", None)
        if procs is None:
            procs = self.localdata.procs = {}
        proc = procs.get(_ENGINE_KEY)
        if proc is None or proc.poll() is not None:
            proc = self.new_js_proc(self._engine_source())
            procs[_ENGINE_KEY] = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        marker = self.process_finished_str.encode()
        try:
            payload = memoryview((json_dumps(js_text) + "\n").encode())
            while payload:
                payload = payload[os.write(proc.stdin.fileno(), payload) :]
        except OSError:
            procs.pop(_ENGINE_KEY, None)
            return 1, "", "the Node.js process ended unexpectedly"
        out, err = bytearray(), bytearray()
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        deadline = time.monotonic() + timeout
        while not (out.endswith(marker) and err.endswith(marker)):
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                procs.pop(_ENGINE_KEY, None)
                return -1, out.decode(errors="replace"), err.decode(errors="replace")
            ready, _, _ = select.select(list(streams), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:  # Node exited
                    procs.pop(_ENGINE_KEY, None)
                    code = proc.wait()
                    return code or 1, out.decode(errors="replace"), err.decode(errors="replace")
                streams[fd].extend(chunk)
        cut = len(marker) + 1
        return 0, out[:-cut].decode(errors="replace"), err[:-cut].decode(errors="replace")

    def _engine_source(self) -> str:
        return _ENGINE_SOURCE % {"mark": json.dumps(self.process_finished_str), "spare": _SPARE_CONTEXTS}


_node_engine: _NodeEngine | None = None


def _engine() -> JSEngine:
    """The engine to use: ours instead of cwl-utils' stock one, any other one as set."""
    global _node_engine
    current = get_js_engine()
    if type(current) is not NodeJSEngine:
        return current  # set with cwl_utils.sandboxjs.set_js_engine (tests, embedders)
    if _node_engine is None:
        _node_engine = _NodeEngine()
    return _node_engine


class _LazyPreludeEngine(JSEngine):
    """A JS engine that builds the expensive prelude only if Node is actually needed."""

    def __init__(self, expression_lib: list[str], rootvars: dict[str, Any]) -> None:
        self._expression_lib = expression_lib
        self._rootvars = rootvars
        self._prelude: str | None = None

    def eval(
        self,
        scan: str,
        jslib: str = "",
        timeout: float = default_timeout,
        force_docker_pull: bool = False,
        debug: bool = False,
        js_console: bool = False,
        container_engine: str = "docker",
        **kwargs: Any,
    ) -> Any:
        if self._prelude is None:
            # what cwl-utils' ``jshead`` builds, with each value on one line: indented JSON
            # takes the json module's pure-Python encoder, several times slower than its C one
            self._prelude = "\n".join(
                [*self._expression_lib, *(f"var {k} = {json_dumps(v)};" for k, v in self._rootvars.items())]
            )
        return _engine().eval(scan, self._prelude, timeout=timeout, debug=debug, **kwargs)

    def regex_eval(self, parsed_string: str, remaining_string: str, current_value: Any, **kwargs: Any) -> Any:
        return _engine().regex_eval(parsed_string, remaining_string, current_value, **kwargs)


class ExpressionEvaluator:
    """Evaluates CWL expressions for one process invocation context.

    Args:
        requirements: the effective requirements (and hints) of the process; the
            ``InlineJavascriptRequirement`` among them enables JavaScript and its
            ``expressionLib``.
        cwl_version: the document's original ``cwlVersion`` (selects the escaping rules).
        timeout: seconds allowed for one JavaScript evaluation.
    """

    def __init__(self, requirements: list[Any], cwl_version: str = "v1.2", *, timeout: float = 20.0) -> None:
        js = Requirements(requirements).get("InlineJavascriptRequirement")
        self.full_js = js is not None
        self.expression_lib: list[str] = [str(x) for x in (js or {}).get("expressionLib") or []]
        self.escaping = 1 if cwl_version in OLD_ESCAPE_CWL_VERSIONS else 2
        self.timeout = timeout

    def evaluate(
        self,
        expr: Any,
        inputs: Mapping[str, Any],
        *,
        self_: Any = None,
        runtime: Mapping[str, Any] | None = None,
        strip_whitespace: bool = True,
    ) -> Any:
        """Evaluate ``expr`` if it is a string with expressions; return it unchanged otherwise.

        Args:
            expr: the value to evaluate (anything that is not a string is returned as is).
            inputs: the ``inputs`` object.
            self_: the value of ``self``.
            runtime: the ``runtime`` object (``outdir``, ``tmpdir``, ``cores``, ...).
            strip_whitespace: strip leading/trailing whitespace of ``expr`` first.

        Returns:
            The result: a JSON value, or a string when the expression interpolates text.

        Raises:
            JobFailedError: the expression is malformed or raised an error (not retryable).
        """
        if not has_expression(expr):
            return expr
        rootvars = {"inputs": inputs, "self": self_, "runtime": dict(runtime or {})}
        engine = _LazyPreludeEngine(self.expression_lib, rootvars)
        try:
            segments = _segments(expr.strip() if strip_whitespace else expr, self.escaping)
            if len(segments) == 1 and segments[0][0]:
                # the whole string is one expression: its value, whatever its type
                return self._one(segments[0][1], rootvars, engine)
            parts: list[str] = []
            for is_expression, text in segments:
                if not is_expression:
                    parts.append(text)
                    continue
                leaf = json_dumps(self._one(text, rootvars, engine), sort_keys=True)
                parts.append(json.loads(leaf) if leaf.startswith('"') else leaf)
            return "".join(parts)
        except (JavascriptException, SubstitutionError, WorkflowException) as exc:
            raise JobFailedError(f"expression {_abbrev(expr)} failed: {exc}", retryable=False) from exc

    def _one(self, text: str, rootvars: dict[str, Any], engine: JSEngine) -> Any:
        """Evaluate one ``(...)``/``{...}`` part (the text after its ``$``)."""
        path = _reference(text)
        if path is not None and path[0] in rootvars:
            found, value = _walk(rootvars[str(path[0])], path[1:])
            if found:
                return value
        return evaluator(engine, text, rootvars, "", self.full_js, timeout=self.timeout)  # type: ignore[arg-type]


_PLAIN_REFERENCE = re.compile(r"\((inputs|self|runtime)((?:\.\w+|\[[0-9]+\])*)\)")
_PLAIN_SEGMENT = re.compile(r"\.(\w+)|\[([0-9]+)\]")


@functools.lru_cache(maxsize=4096)
def _reference(text: str) -> tuple[str | int, ...] | None:
    """The path of a plain parameter reference (``(inputs.x[0].path)`` -> ``("inputs", "x", 0,
    "path")``), or None for anything else (quoted keys, JavaScript)."""
    match = _PLAIN_REFERENCE.fullmatch(text)
    if match is None:
        return None
    path: list[str | int] = [match.group(1)]
    for key, index in _PLAIN_SEGMENT.findall(match.group(2)):
        path.append(key if key else int(index))
    return tuple(path)


def _walk(value: Any, path: tuple[str | int, ...]) -> tuple[bool, Any]:
    """Follow ``path`` from ``value`` as cwl-utils' parameter references do; ``(False, None)``
    where it would raise (the caller then lets cwl-utils raise its own error)."""
    for i, key in enumerate(path):
        if isinstance(key, int):
            if not isinstance(value, list) or key >= len(value):
                return False, None
            value = value[key]
        elif isinstance(value, list) and key == "length" and i == len(path) - 1:
            return True, len(value)
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return False, None
    return True, value


@functools.lru_cache(maxsize=4096)
def _segments(scan: str, escaping: int) -> tuple[tuple[bool, str], ...]:
    """Split an expression string into its text and its expressions, as cwl-utils does.

    This is the tokenisation of :func:`cwl_utils.expression.interpolate` (its ``scanner`` and
    backslash rules), which depends on the string alone, so it is done once per string.

    Args:
        scan: the string (already stripped when whitespace is to be ignored).
        escaping: 1 for the CWL v1.0 backslash rules, 2 for the later ones.

    Returns:
        ``(True, text)`` for an expression (``text`` is ``(...)`` or ``{...}``, without its
        ``$``) and ``(False, text)`` for literal text; adjacent texts are merged and empty
        ones left out.

    Raises:
        SubstitutionError: an expression is not closed.
    """
    segments: list[tuple[bool, str]] = []
    literal: list[str] = []

    def flush() -> None:
        text = "".join(literal)
        literal.clear()
        if text:
            segments.append((False, text))

    found = scanner(scan)
    while found:
        start, end = found
        literal.append(scan[:start])
        if scan[start] == "$":
            flush()
            segments.append((True, scan[start + 1 : end]))
        elif escaping == 1:
            literal.append(scan[end - 1])  # the escaped character, without its backslash
        else:
            escaped = scan[start : end + 1]  # a backslash and the next two characters
            if escaped in ("\\$(", "\\${"):
                literal.append(escaped[1:])
                end += 1
            elif escaped[1] == "\\":
                literal.append("\\")
            else:
                literal.append(escaped[:2])
        scan = scan[end:]
        found = scanner(scan)
    literal.append(scan)
    flush()
    return tuple(segments)


def _abbrev(expr: str) -> str:
    text = " ".join(expr.split())
    return repr(text if len(text) <= 120 else text[:117] + "...")
