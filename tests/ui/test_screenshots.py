"""Screenshots of the UI for docs/ui.md (skipped unless ``STREAMFLOW_UI_SCREENSHOTS`` is set).

``STREAMFLOW_UI_SCREENSHOTS=docs/img .venv/bin/python -m pytest tests/ui/test_screenshots.py
tests/ui/test_browser.py -k 'screenshots or failed_job_page'`` refreshes every picture: runs of
every status in the list, a 240-job run live on three deployments (timeline by location), a run
with a failed job, a graph with two subworkflows (one collapsed), a failed job's page.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.ui.conftest import UIServer
from tests.ui.test_browser import (
    SCATTER,
    SLEEP_TOOL,
    _api,
    _cli,
    _node_point,
    _page,
    _start_scatter,
    _stop,
    _wait_run,
    browser,
    shots,
)

__all__ = ["browser", "shots"]  # fixtures used here


MAYBE_FAILING_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
arguments: ["sleep $(inputs.seconds); if [ $(inputs.message) = m17 ]; then echo 'no such sample: m17' >&2; exit 2; fi"]
inputs:
  message: string
  seconds: float
outputs: []
stderr: err.txt
"""

PIPELINE = """\
cwlVersion: v1.2
class: Workflow
requirements:
  SubworkflowFeatureRequirement: {}
  ScatterFeatureRequirement: {}
inputs:
  samples: "string[]"
outputs:
  calls: {type: "string[]", outputSource: annotate/out}
  stats: {type: "string[]", outputSource: qc/stats}
steps:
  align: {run: echo.cwl, scatter: x, in: {x: samples}, out: [out]}
  call:
    run:
      class: Workflow
      requirements: {ScatterFeatureRequirement: {}}
      inputs: {reads: "string[]"}
      outputs: {calls: {type: "string[]", outputSource: filter/out}}
      steps:
        pileup: {run: echo.cwl, scatter: x, in: {x: reads}, out: [out]}
        filter: {run: echo.cwl, scatter: x, in: {x: pileup/out}, out: [out]}
    in: {reads: align/out}
    out: [calls]
  qc:
    run:
      class: Workflow
      requirements: {ScatterFeatureRequirement: {}}
      inputs: {reads: "string[]"}
      outputs: {stats: {type: "string[]", outputSource: coverage/out}}
      steps:
        depth: {run: echo.cwl, scatter: x, in: {x: reads}, out: [out]}
        coverage: {run: echo.cwl, scatter: x, in: {x: depth/out}, out: [out]}
    in: {reads: align/out}
    out: [stats]
  annotate: {run: echo.cwl, scatter: x, in: {x: call/calls}, out: [out]}
"""

SITES = """\
version: v1.0
workflows:
  call-variants:
    type: cwl
    config: {file: call-variants.cwl, settings: job.yml}
    bindings:
      - step: /work
        target: [{deployment: node-a}, {deployment: node-b}, {deployment: node-c}]
deployments:
  node-a: {type: local, config: {}}
  node-b: {type: local, config: {}}
  node-c: {type: local, config: {}}
"""


@pytest.mark.skipif(not os.environ.get("STREAMFLOW_UI_SCREENSHOTS"),
                    reason="screenshots for docs/ui.md: set STREAMFLOW_UI_SCREENSHOTS=docs/img")
def test_screenshots_for_the_docs(browser: Any, ui_server: UIServer, tmp_path: Path, shots: Path) -> None:
    """The pictures of docs/ui.md: runs of every status in the list, a 240-job run live on three
    deployments, a run with a failed job, a graph with a subworkflow."""
    procs: list[subprocess.Popen[str]] = []
    page = _page(browser, ui_server)
    page.set_viewport_size({"width": 1400, "height": 900})
    try:
        # A completed run, a failed one, a cancelled one, a rerun of the failed one.
        shutil.copyfile(Path(__file__).resolve().parents[2] / "bench" / "workflows" / "echo.cwl", tmp_path / "echo.cwl")
        (tmp_path / "germline.cwl").write_text(PIPELINE)
        (tmp_path / "samples.yml").write_text(f"samples: {json.dumps([f'S{i}' for i in range(8)])}\n")
        done = f"s{uuid.uuid4().hex[:12]}"
        result = run_cli(["run", "--quiet", "--run-id", done, "--outdir", str(tmp_path / "o1"),
                          str(tmp_path / "germline.cwl"), str(tmp_path / "samples.yml")], ui_server.env, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        rerun = f"r{uuid.uuid4().hex[:12]}"
        assert run_cli(["rerun", done, "--run-id", rerun, "--outdir", str(tmp_path / "o2"), "--quiet"],
                       ui_server.env, cwd=tmp_path).returncode == 0
        cancelled, proc = _start_scatter(ui_server, tmp_path / "cancelled", n=40, seconds=2, name="align-reads")
        procs.append(proc)
        _wait_run(ui_server, cancelled, ("RUNNING",))
        time.sleep(3)
        assert run_cli(["cancel", cancelled, "--reason", "wrong reference genome"], ui_server.env).returncode == 0

        root = tmp_path / "partly"
        root.mkdir()
        (root / "sleep.cwl").write_text(MAYBE_FAILING_TOOL)
        (root / "quality-control.cwl").write_text(SCATTER.replace("outputs:\n  outs:\n    type: File[]\n    outputSource: work/out\n",
                                                     "outputs: []\n").replace("out: [out]", "out: []"))
        (root / "job.yml").write_text(f"messages: {json.dumps([f'm{i}' for i in range(60)])}\nseconds: 0.4\n")
        failed = f"p{uuid.uuid4().hex[:12]}"
        run_cli(["run", "--quiet", "--run-id", failed, "--outdir", str(root / "out"), str(root / "quality-control.cwl"),
                 str(root / "job.yml")], ui_server.env, cwd=root)
        _wait_run(ui_server, failed, ("FAILED",))

        # The big one: 240 jobs on three deployments, still running for the pictures.
        big = tmp_path / "big"
        big.mkdir()
        (big / "sleep.cwl").write_text(SLEEP_TOOL)
        (big / "call-variants.cwl").write_text(SCATTER)
        (big / "job.yml").write_text(f"messages: {json.dumps([f'sample-{i:03d}' for i in range(240)])}\nseconds: 1.2\n")
        (big / "streamflow.yml").write_text(SITES)
        run_id = f"b{uuid.uuid4().hex[:12]}"
        procs.append(_cli(ui_server, "run", "--quiet", "--run-id", run_id, "--outdir", str(big / "out"),
                          str(big / "streamflow.yml"), cwd=big))
        _wait_run(ui_server, run_id, ("RUNNING",))

        page.goto(f"{ui_server.base_url}/#/")
        page.locator(f"tr[data-run='{run_id}']").wait_for(timeout=60_000)
        page.wait_for_timeout(4000)
        table = page.locator("[data-testid=runs-table]").bounding_box()
        page.screenshot(path=str(shots / "ui-runs.png"),
                        clip={"x": 0, "y": 0, "width": 1400, "height": table["y"] + table["height"] + 24})

        page.goto(f"{ui_server.base_url}/#/run/{run_id}")
        page.wait_for_function("() => Number(document.querySelector('[data-testid=timeline]').dataset.attempts || 0)"
                               " >= 60", timeout=120_000)
        page.wait_for_timeout(1500)
        page.set_viewport_size({"width": 1400, "height": 1300})
        page.screenshot(path=str(shots / "ui-run.png"))

        page.set_viewport_size({"width": 1400, "height": 1050})
        page.goto(f"{ui_server.base_url}/#/run/{failed}")
        page.wait_for_selector("[data-testid=run-status] [data-status=FAILED]", timeout=30_000)
        page.select_option("[data-testid=jobs-state]", "failed")
        page.wait_for_selector("[data-testid=jobs-table] tbody tr.row-failed", timeout=30_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(shots / "ui-run-failed.png"))
        page.select_option("[data-testid=jobs-state]", "")

        # A graph with two subworkflows, one of them collapsed (a click on its box).
        page.goto(f"{ui_server.base_url}/#/run/{done}")
        page.wait_for_selector("[data-testid=run-status] [data-status=COMPLETED]", timeout=30_000)
        qc = next(n["id"] for n in _api(ui_server, f"/api/runs/{done}/graph")["nodes"]
                  if n["kind"] == "workflow" and n["label"] == "qc")
        page.wait_for_function("() => Number(document.querySelector('[data-testid=graph]').dataset.nodes) > 0")
        page.mouse.click(*_node_point(page, qc, top=True))
        page.wait_for_function("id => document.querySelector('[data-testid=graph]').dataset.collapsed === id", arg=qc)
        page.wait_for_timeout(500)
        page.locator("[data-testid=graph]").locator("xpath=..").screenshot(path=str(shots / "ui-graph.png"))
        _wait_run(ui_server, run_id, ("COMPLETED", "FAILED", "CANCELLED"), timeout=300)
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
        for proc in procs:
            _stop(proc)
