"""CWL parameter references and JavaScript expressions.

Evaluation is delegated to :mod:`cwl_utils.expression`, which keeps one persistent Node.js
process per thread. Two things keep it cheap in a large scatter:

* parameter references (``$(inputs.x.path)``) are resolved in Python and never start Node;
* the JavaScript prelude (``expressionLib`` plus the serialised ``inputs``/``self``/``runtime``)
  is only built when an expression actually has to go to Node.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Mapping
from importlib.resources import files
from typing import Any

from cwl_utils.errors import JavascriptException, SubstitutionError, WorkflowException
from cwl_utils.expression import OLD_ESCAPE_CWL_VERSIONS, interpolate, jshead
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


_ENGINE_SCRIPT = "cwlNodeEngine.js"


class _NodeEngine(NodeJSEngine):
    """cwl-utils' Node.js engine (same script, same protocol), started and read frugally.

    * the Node process of a thread is started directly from ``PATH``, without the two
      extra Node runs (a test script and ``node -v``) the stock engine makes first;
    * an evaluation waits for Node's answer in ``select`` instead of polling a pipe that is
      always writable, which kept a CPU busy for as long as Node took to answer (its whole
      start-up time on the first expression).
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
        proc = procs.get(_ENGINE_SCRIPT)
        if proc is None or proc.poll() is not None:
            proc = self.new_js_proc(files("cwl_utils").joinpath(_ENGINE_SCRIPT).read_text("utf-8"))
            procs[_ENGINE_SCRIPT] = proc
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        marker = self.process_finished_str.encode()
        try:
            payload = memoryview((json_dumps(js_text) + "\n").encode())
            while payload:
                payload = payload[os.write(proc.stdin.fileno(), payload) :]
        except OSError:
            procs.pop(_ENGINE_SCRIPT, None)
            return 1, "", "the Node.js process ended unexpectedly"
        out, err = bytearray(), bytearray()
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
        deadline = time.monotonic() + timeout
        while not (out.endswith(marker) and err.endswith(marker)):
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                procs.pop(_ENGINE_SCRIPT, None)
                return -1, out.decode(errors="replace"), err.decode(errors="replace")
            ready, _, _ = select.select(list(streams), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                if not chunk:  # Node exited
                    procs.pop(_ENGINE_SCRIPT, None)
                    code = proc.wait()
                    return code or 1, out.decode(errors="replace"), err.decode(errors="replace")
                streams[fd].extend(chunk)
        cut = len(marker) + 1
        return 0, out[:-cut].decode(errors="replace"), err[:-cut].decode(errors="replace")


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
            self._prelude = jshead(self._expression_lib, self._rootvars)  # type: ignore[arg-type]
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
            return interpolate(
                expr,
                rootvars,  # type: ignore[arg-type]
                fullJS=self.full_js,
                strip_whitespace=strip_whitespace,
                escaping_behavior=self.escaping,
                js_engine=engine,
                timeout=self.timeout,
            )
        except (JavascriptException, SubstitutionError, WorkflowException) as exc:
            raise JobFailedError(f"expression {_abbrev(expr)} failed: {exc}", retryable=False) from exc


def _abbrev(expr: str) -> str:
    text = " ".join(expr.split())
    return repr(text if len(text) <= 120 else text[:117] + "...")
