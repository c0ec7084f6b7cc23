"""Run the CWL v1.2 conformance CommandLineTool/ExpressionTool tests through the tool layer.

Usage: python bench/cwl_tool_harness.py [-k SUBSTRING] [-v] [--ids a,b]
Prints one line per test and a summary. A development aid; the curated pytest module is
tests/streamflow/cwl/test_conformance_tools.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from cwltest.compare import CompareFail, compare
from ruamel.yaml import YAML

from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.loader import load_document, load_job
from streamflow.cwl.tool import check_requirements_supported, execute_process, resolve_requirements
from streamflow.errors import UnsupportedRequirementError

SUITE = (Path(__file__).resolve().parents[1] / "../shared/cwl-v1.2").resolve()


def _resolve_imports(value: Any, base: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$import"}:
            return YAML(typ="safe", pure=True).load((base / value["$import"]).read_text())
        return {k: _resolve_imports(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_imports(v, base) for v in value]
    return value


def load_tests(path: Path) -> list[dict[str, Any]]:
    yaml = YAML(typ="safe", pure=True)
    entries = yaml.load(path.read_text())
    result: list[dict[str, Any]] = []
    for entry in entries:
        if "$import" in entry:
            sub = path.parent / entry["$import"]
            result.extend(load_tests(sub))
            continue
        entry = _resolve_imports(dict(entry), path.parent)
        for key in ("tool", "job"):
            if entry.get(key):
                entry[key] = str((path.parent / entry[key]).resolve())
        result.append(entry)
    return result


def tool_tests() -> list[dict[str, Any]]:
    tests = load_tests(SUITE / "conformance_tests.yaml")
    return [
        t
        for t in tests
        if set(t.get("tags", [])) & {"command_line_tool", "expression_tool"}
        and "workflow" not in t.get("tags", [])
    ]


async def run_one(test: dict[str, Any], workdir: str) -> dict[str, Any]:
    doc = load_document(test["tool"])
    job = load_job(test.get("job"), doc.process)
    reqs, hints = resolve_requirements(doc.process, [], [])
    extra = job.pop("cwl:requirements", [])
    if extra:
        reqs, _ = resolve_requirements({"requirements": extra}, reqs, [])
    check_requirements_supported(doc.process, reqs)
    base = os.path.dirname(test["job"]) if test.get("job") else os.path.dirname(test["tool"])
    inputs = fill_and_validate_inputs(
        doc.process,
        job,
        requirements=reqs,
        hints=hints,
        base_dir=base,
        cwl_version=doc.cwl_version,
        namespaces=doc.namespaces,
    )
    return await execute_process(
        doc.process,
        inputs,
        requirements=reqs,
        hints=hints,
        outdir=os.path.join(workdir, "out"),
        tmpdir=os.path.join(workdir, "tmp"),
        cwl_version=doc.cwl_version,
    )


def check(test: dict[str, Any]) -> tuple[str, str]:
    with tempfile.TemporaryDirectory() as workdir:
        try:
            out = asyncio.run(run_one(test, workdir))
        except UnsupportedRequirementError as exc:
            return ("unsupported" if not test.get("should_fail") else "pass"), str(exc)
        except Exception as exc:
            if test.get("should_fail"):
                return "pass", f"failed as expected: {type(exc).__name__}: {exc}"
            return (
                "fail",
                f"{type(exc).__name__}: {exc}\n{traceback.format_exc() if os.environ.get('TB') else ''}",
            )
        if test.get("should_fail"):
            return "fail", f"expected failure, got {out}"
        try:
            compare(test.get("output"), out)
        except CompareFail as exc:
            return "fail", f"compare: {exc}"
        return "pass", ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("-k", default="")
    parser.add_argument("--ids", default="")
    parser.add_argument("-v", action="store_true")
    args = parser.parse_args()
    tests = tool_tests()
    if args.ids:
        wanted = set(args.ids.split(","))
        tests = [t for t in tests if t["id"] in wanted]
    tests = [t for t in tests if args.k in t["id"]]
    counts: dict[str, int] = {}
    start = time.monotonic()
    for test in tests:
        status, info = check(test)
        counts[status] = counts.get(status, 0) + 1
        if status != "pass" or args.v:
            print(f"{status:12} {test['id']}: {info[:2000] if args.v or status == 'fail' else info[:200]}")
        else:
            print(f"{status:12} {test['id']}")
    print(f"summary: {counts} of {len(tests)} in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
