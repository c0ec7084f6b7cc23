"""CWL v1.2 conformance tests for single tools, run directly through the tool layer.

Every CommandLineTool/ExpressionTool test of the suite (``command_line_tool`` or
``expression_tool`` tag, no ``workflow`` tag) goes through ``load_document`` ->
``load_job`` -> ``fill_and_validate_inputs`` -> ``execute_process`` and its output is compared
with the expected one by ``cwltest.compare.compare``. No engine and no bus are involved.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from cwltest.compare import CompareFail, compare
from ruamel.yaml import YAML

from streamflow.cwl.inputs import fill_and_validate_inputs
from streamflow.cwl.loader import load_document, load_job
from streamflow.cwl.tool import check_requirements_supported, execute_process, resolve_requirements
from streamflow.errors import StreamFlowError, UnsupportedRequirementError

pytestmark = pytest.mark.conformance

SUITE = (Path(__file__).parents[3] / "../shared/cwl-v1.2").resolve()

# Tests that cannot pass here, with the reason. (Container paths and official images'
# entry points are emulated on the host: see streamflow/cwl/hostpaths.py.)
KNOWN_GAPS = {
    "networkaccess": "needs outbound network access",
}


def _resolve_imports(value: Any, base: Path) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$import"}:
            return YAML(typ="safe", pure=True).load((base / value["$import"]).read_text())
        return {k: _resolve_imports(v, base) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_imports(v, base) for v in value]
    return value


def _load_index(path: Path) -> list[dict[str, Any]]:
    entries = YAML(typ="safe", pure=True).load(path.read_text())
    result: list[dict[str, Any]] = []
    for entry in entries:
        if "$import" in entry:
            result.extend(_load_index(path.parent / entry["$import"]))
            continue
        entry = _resolve_imports(dict(entry), path.parent)
        for key in ("tool", "job"):
            if entry.get(key):
                entry[key] = str((path.parent / entry[key]).resolve())
        result.append(entry)
    return result


def _tool_tests() -> list[Any]:
    index = SUITE / "conformance_tests.yaml"
    if not index.is_file():
        return [pytest.param(None, id="suite-missing")]
    params = []
    for test in _load_index(index):
        tags = set(test.get("tags", []))
        if not tags & {"command_line_tool", "expression_tool"} or "workflow" in tags:
            continue
        marks = [pytest.mark.skip(reason=KNOWN_GAPS[test["id"]])] if test["id"] in KNOWN_GAPS else []
        params.append(pytest.param(test, id=test["id"], marks=marks))
    return params


async def _run(test: dict[str, Any], workdir: Path) -> dict[str, Any]:
    doc = load_document(test["tool"])
    job = load_job(test.get("job"), doc.process)
    requirements, hints = resolve_requirements(doc.process, [], [])
    extra = job.pop("cwl:requirements", [])
    if extra:
        requirements, _ = resolve_requirements({"requirements": extra}, requirements, [])
    check_requirements_supported(doc.process, requirements)
    base = os.path.dirname(test.get("job") or test["tool"])
    inputs = fill_and_validate_inputs(
        doc.process,
        job,
        requirements=requirements,
        hints=hints,
        base_dir=base,
        cwl_version=doc.cwl_version,
        namespaces=doc.namespaces,
    )
    return await execute_process(
        doc.process,
        inputs,
        requirements=requirements,
        hints=hints,
        outdir=str(workdir / "out"),
        tmpdir=str(workdir / "tmp"),
        cwl_version=doc.cwl_version,
    )


@pytest.mark.parametrize("test", _tool_tests())
async def test_conformance_tool(test: dict[str, Any] | None, tmp_path: Path) -> None:
    """A conformance CommandLineTool/ExpressionTool test gives the expected output (or fails when it should)."""
    if test is None:
        pytest.skip(f"CWL v1.2 conformance suite not found at {SUITE}")
    if test.get("should_fail"):
        with pytest.raises(StreamFlowError):
            await _run(test, tmp_path)
        return
    try:
        output = await _run(test, tmp_path)
    except UnsupportedRequirementError as exc:
        if "required" in test.get("tags", []):
            raise
        pytest.skip(f"unsupported: {exc}")
    try:
        compare(test.get("output"), output)
    except CompareFail as exc:
        pytest.fail(f"{test['id']}: {exc}")
