"""The UI in a real browser: headless Debian Chromium driven by Playwright for Python.

What a person sees: a run appears in the list while it runs, its graph and timeline fill in
live, Cancel from the page cancels it (the log says RunCancelled) and Resume finishes it; a
failed job's page shows its error and stderr; nothing is shown without the token; the report
of ``streamflow report`` draws with the same timeline component.

Screenshots go to ``$STREAMFLOW_UI_SCREENSHOTS`` when set (``docs/img`` to refresh the docs'
pictures), else to the test's temporary directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.ui.conftest import UIServer

CHROMIUM = os.environ.get("STREAMFLOW_CHROMIUM", "/usr/bin/chromium")
playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM),
                                reason=f"no Chromium at {CHROMIUM} (apt-get install chromium)")

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]

SLEEP_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
arguments: ["sleep $(inputs.seconds); echo done $(inputs.message)"]
inputs:
  message: string
  seconds: float
outputs:
  out: stdout
stdout: out.txt
"""

SCATTER = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  messages: string[]
  seconds: float
outputs:
  outs:
    type: File[]
    outputSource: work/out
steps:
  work:
    run: sleep.cwl
    scatter: message
    in:
      message: messages
      seconds: seconds
    out: [out]
"""

FAILING_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c]
arguments: ["echo 'reading input'; echo 'fatal: the table has no column sample_id' >&2; exit 3"]
inputs: []
outputs:
  log: stdout
stdout: out.txt
stderr: err.txt
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium for the module (each test gets a fresh context: no shared cookies)."""
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go."""
    target = Path(os.environ.get("STREAMFLOW_UI_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _page(browser: Any, ui: UIServer, *, login: bool = True) -> Any:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    if login:
        page.goto(f"{ui.base_url}/?token={ui.token}")
        assert "token=" not in page.url  # the token left the address bar
    return page


def _api(ui: UIServer, path: str) -> Any:
    import httpx

    response = httpx.get(f"{ui.base_url}{path}", headers=ui.headers, timeout=30)
    response.raise_for_status()
    return response.json()


def _start_scatter(ui: UIServer, root: Path, n: int, seconds: float,
                   name: str = "wf") -> tuple[str, subprocess.Popen[str]]:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sleep.cwl").write_text(SLEEP_TOOL)
    (root / f"{name}.cwl").write_text(SCATTER)
    (root / "job.yml").write_text(textwrap.dedent(f"""\
        messages: {json.dumps([f"m{i}" for i in range(n)])}
        seconds: {seconds}
    """))
    run_id = f"u{uuid.uuid4().hex[:12]}"
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", code, "run", "--quiet", "--run-id", run_id,
                             "--outdir", str(root / "out"), str(root / f"{name}.cwl"), str(root / "job.yml")],
                            env=ui.env, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return run_id, proc


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def test_unauthenticated_access_is_refused(browser: Any, ui_server: UIServer) -> None:
    """Without the token the page says a token is required and the API answers 401."""
    page = _page(browser, ui_server, login=False)
    try:
        response = page.goto(f"{ui_server.base_url}/")
        assert response is not None and response.status == 401
        assert "token" in page.inner_text("body").lower()
        api = page.goto(f"{ui_server.base_url}/api/runs")
        assert api is not None and api.status == 401
        wrong = page.goto(f"{ui_server.base_url}/?token=not-the-token")
        assert wrong is not None and wrong.status == 401
        assert not any(c["name"] == "sf_ui" for c in page.context.cookies())
    finally:
        page.context.close()


def test_live_run_graph_timeline_cancel_and_resume(browser: Any, ui_server: UIServer, tmp_path: Path) -> None:
    """A scatter run appears while it runs, its graph and timeline fill in, Cancel cancels it
    (RunCancelled in the log) and Resume finishes it: all from the page."""
    run_id, proc = _start_scatter(ui_server, tmp_path / "wf", n=12, seconds=1.5)
    page = _page(browser, ui_server)
    try:
        row = page.locator(f"tr[data-run='{run_id}']")
        row.wait_for(timeout=60_000)
        page.wait_for_function(
            "id => { const r = document.querySelector(`tr[data-run='${id}'] [data-status]`);"
            " return r && r.dataset.status === 'RUNNING'; }", arg=run_id, timeout=60_000)
        page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)  # to look at when it fails
        row.click()
        page.wait_for_url(f"**/#/run/{run_id}")
        # The graph is drawn (the step, its ports, inputs, outputs) and the timeline fills in live.
        page.wait_for_function("() => Number(document.querySelector('[data-testid=graph]')"
                               ".getAttribute('data-nodes') || 0) >= 3", timeout=30_000)
        page.wait_for_function("() => Number(document.querySelector('[data-testid=timeline]')"
                               ".getAttribute('data-attempts') || 0) >= 1", timeout=60_000)
        first = int(page.get_attribute("[data-testid=timeline]", "data-attempts") or 0)
        page.wait_for_function(f"() => Number(document.querySelector('[data-testid=timeline]')"
                               f".getAttribute('data-attempts') || 0) > {first}", timeout=60_000)
        assert page.locator("[data-testid=run-status] [data-status]").get_attribute("data-status") == "RUNNING"
        assert page.locator("[data-testid=jobs-table] tbody tr").count() >= 1
        page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

        # Cancel from the page, with its confirmation.
        page.click("[data-testid=action-cancel]")
        page.fill("[data-testid=cancel-reason]", "browser test")
        page.click("[data-testid=confirm-yes]")
        page.wait_for_selector("[data-testid=run-status] [data-status=CANCELLED]", timeout=60_000)
        # Nothing is shown running once the run is cancelled: the jobs it stopped or never ran say so.
        page.wait_for_function("() => { const b = [...document.querySelectorAll('[data-testid=jobs-table] tbody "
                               "[data-status]')].map(e => e.dataset.status); return b.length > 0 && "
                               "!b.includes('running') && !b.includes('waiting'); }", timeout=30_000)
        assert "not run" in page.inner_text("[data-testid=run-counts]")
        proc.wait(timeout=60)
        cancelled = _api(ui_server, f"/api/runs/{run_id}/events?type=RunCancelled")
        assert [e["type"] for e in cancelled["events"]] == ["RunCancelled"]
        assert cancelled["events"][0].get("reason") == "browser test"

        # Resume from the page: the run finishes.
        page.click("[data-testid=action-resume]")
        page.click("[data-testid=confirm-yes]")
        page.wait_for_selector("[data-testid=action-message].ok", timeout=30_000)
        page.wait_for_selector("[data-testid=run-status] [data-status=COMPLETED]", timeout=120_000)
        detail = _api(ui_server, f"/api/runs/{run_id}")
        assert detail["summary"]["jobs"]["completed"] == 12
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
        _stop(proc)


def test_failed_job_page_shows_error_and_stderr(browser: Any, ui_server: UIServer, tmp_path: Path,
                                                shots: Path) -> None:
    """The failed run shows its error prominently; its job's page shows the exit code, error and stderr."""
    (tmp_path / "fail.cwl").write_text(FAILING_TOOL)
    run_id = f"f{uuid.uuid4().hex[:12]}"
    result = run_cli(["run", "--quiet", "--run-id", run_id, "--outdir", str(tmp_path / "out"),
                      str(tmp_path / "fail.cwl")], ui_server.env, cwd=tmp_path)
    assert result.returncode != 0
    page = _page(browser, ui_server)
    try:
        page.goto(f"{ui_server.base_url}/#/run/{run_id}")
        page.wait_for_selector("[data-testid=run-status] [data-status=FAILED]", timeout=30_000)
        assert "exited with code 3" in page.inner_text("[data-testid=run-error]")
        failed_row = page.locator("[data-testid=jobs-table] tbody tr.row-failed")
        failed_row.first.wait_for(timeout=30_000)
        failed_row.first.click()
        page.wait_for_selector("[data-testid=job-error]", timeout=30_000)
        assert "exit code 3" in page.inner_text("[data-testid=job-error]")
        assert "fatal: the table has no column sample_id" in page.inner_text("[data-testid=stderr-tail]")
        assert "reading input" in page.inner_text("[data-testid=stdout-tail]")
        assert page.locator("[data-testid=attempts] tbody tr").count() == 1
        page.screenshot(path=str(shots / "ui-job-failed.png"), full_page=True)
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


def _attempts(n: int, t0: float) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        start = t0 + (i // 4) * 1.0
        failed = i == 5
        rows.append({"job": f"j{i}", "step": "s1", "step_name": "/work", "tag": f"0.{i}", "attempt": 1,
                     "delivery": 1, "deployment": "__LOCAL__", "location": "localhost", "worker": "w",
                     "status": "FAILED" if failed else "COMPLETED", "requested_at": t0, "scheduled_at": t0,
                     "start": start, "end": start + 0.9, "duration": 0.9, "exit_code": 3 if failed else 0,
                     "error": "boom" if failed else None})
    rows[7].update(status="RUNNING", end=None, duration=None, exit_code=None)  # open when the run ended
    return rows


@pytest.mark.parametrize(("attempts", "view"), [(20, "detailed"), (2500, "aggregated")])
def test_report_page_draws_the_shared_timeline(browser: Any, tmp_path: Path, attempts: int, view: str) -> None:
    """The self-contained report (opened from disk, offline) draws its embedded data with
    timeline.js: bars per attempt for a small run, the aggregated view past 2,000 attempts."""
    from streamflow.cli.commands.report import render

    t0 = time.time() - 3600
    data = {"run_id": "rreport", "name": "wf", "workflow": "wf.cwl", "status": "COMPLETED", "submitted_at": t0,
            "ended_at": t0 + attempts, "duration": float(attempts), "steps": {"s1": "/work"},
            "jobs": _attempts(attempts, t0), "waiting": [], "reused": [], "job_states": {}, "transfers": [],
            "bytes_transferred": 0}
    target = tmp_path / "report.html"
    target.write_text(render(data, "html"))
    page = browser.new_page()
    try:
        page.route("**/*", lambda route: route.abort() if not route.request.url.startswith("file:")
                   else route.continue_())
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(target.as_uri())
        page.wait_for_selector(f"#sf-timeline[data-view={view}]", timeout=30_000)
        assert page.get_attribute("#sf-timeline", "data-attempts") == str(attempts)
        if view == "detailed":
            assert page.locator("#sf-timeline .bars path").count() == attempts
            legend = page.locator("#sf-timeline .legendtext").all_text_contents()
            assert sorted(legend) == ["completed", "failed", "interrupted"], legend  # not "running": the run ended
            page.select_option("#sf-group-by", "step")
            page.wait_for_function("() => [...document.querySelectorAll('#sf-timeline .ytick text')]"
                                   ".some(t => t.textContent.startsWith('/work'))", timeout=10_000)
        assert errors == []
    finally:
        page.close()


SUBWORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements:
  SubworkflowFeatureRequirement: {}
inputs:
  x: string
outputs:
  out:
    type: string
    outputSource: inner/second
steps:
  prepare:
    run: echo.cwl
    in: {x: x}
    out: [out]
  inner:
    run:
      class: Workflow
      inputs:
        x: string
      outputs:
        second:
          type: string
          outputSource: twice/out
      steps:
        once:
          run: echo.cwl
          in: {x: x}
          out: [out]
        twice:
          run: echo.cwl
          in: {x: once/out}
          out: [out]
    in: {x: prepare/out}
    out: [second]
"""


def _cli(ui: UIServer, *args: str, cwd: Path) -> subprocess.Popen[str]:
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=ui.env, cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _failed_run(ui: UIServer, root: Path) -> str:
    """A finished run whose one job failed writing to stderr."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "fail.cwl").write_text(FAILING_TOOL)
    run_id = f"f{uuid.uuid4().hex[:12]}"
    result = run_cli(["run", "--quiet", "--run-id", run_id, "--outdir", str(root / "out"), str(root / "fail.cwl")],
                     ui.env, cwd=root)
    assert result.returncode != 0, result.stderr
    return run_id


def _wait_run(ui: UIServer, run_id: str, statuses: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        import httpx

        response = httpx.get(f"{ui.base_url}/api/runs/{run_id}", headers=ui.headers, timeout=30)
        if response.status_code == 200 and response.json()["summary"]["status"] in statuses:
            return dict(response.json())
        assert time.monotonic() < deadline, f"run {run_id} not {statuses} after {timeout} s"
        time.sleep(0.5)


_STATUS = "() => document.querySelector('[data-testid=run-status] [data-status]')?.dataset.status"
_SAMPLE = """() => {
  const counts = document.querySelector('[data-testid=run-counts]');
  const table = document.querySelector('[data-testid=jobs-table]');
  const tl = document.querySelector('[data-testid=timeline]');
  const done = /(\\d+) completed/.exec(counts ? counts.textContent : '');
  return {status: document.querySelector('[data-testid=run-status] [data-status]')?.dataset.status || null,
          completed: done ? Number(done[1]) : 0,
          updates: Number(counts?.dataset.updates || 0), tableUpdate: Number(table?.dataset.update || 0),
          rows: table ? table.querySelectorAll('tbody tr').length : 0,
          attempts: Number(tl?.dataset.attempts || 0), dom: document.getElementsByTagName('*').length};
}"""


@pytest.mark.slow
def test_follow_a_1000_job_scatter_live(browser: Any, ui_server: UIServer, tmp_path: Path) -> None:
    """From the runs list into the run page of a 1,000-job scatter of a trivial tool, while it
    runs: the counts go up, the timeline grows, the jobs table keeps at most ~200 DOM rows and
    follows the feed, the page answers a script round trip quickly; it ends COMPLETED with
    1,000 completed on screen."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "workflows"))
    try:
        from generate import generate  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    workflow, job = generate("scatter", 1000, tmp_path / "wf")
    run_id = f"k{uuid.uuid4().hex[:12]}"
    proc = _cli(ui_server, "run", "--quiet", "--run-id", run_id, "--outdir", str(tmp_path / "out"),
                str(workflow), str(job), cwd=tmp_path)
    page = _page(browser, ui_server)
    job_requests: list[str] = []
    page.on("request", lambda r: job_requests.append(r.url) if f"/api/runs/{run_id}/jobs?" in r.url else None)
    try:
        row = page.locator(f"tr[data-run='{run_id}']")
        row.wait_for(timeout=60_000)
        row.click()
        page.wait_for_url(f"**/#/run/{run_id}")
        samples: list[dict[str, Any]] = []
        trips: list[float] = []
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            sample = page.evaluate(_SAMPLE)
            trips.append(time.monotonic() - t0)
            samples.append(sample)
            if sample["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
                break
            page.wait_for_timeout(300)
        running = [s for s in samples if s["status"] == "RUNNING"]
        # What a person sees while it runs: counts going up, a timeline growing.
        completed = [s["completed"] for s in running]
        assert completed == sorted(completed), completed
        assert len({c for c in completed if 0 < c < 1000}) >= 3, completed
        attempts = [s["attempts"] for s in running]
        assert len({a for a in attempts if a > 0}) >= 3, attempts
        # Paged, and following the feed (not only refreshed at the end), at most one request an update.
        assert max(s["rows"] for s in samples) <= 200
        assert len({s["tableUpdate"] for s in running if s["tableUpdate"]}) >= 3, running
        lags = sorted(s["updates"] - s["tableUpdate"] for s in running)
        assert lags[len(lags) // 2] <= 2, running  # typically 0 or 1 update behind the header
        assert len(job_requests) <= max(s["updates"] for s in samples) + 10
        # Responsive: loose bound, the machine is shared (a busy page takes seconds, not 10s of ms).
        assert max(trips) < 2.0, trips
        assert samples[-1]["status"] == "COMPLETED", samples[-1]
        page.wait_for_function("() => /\\b1000 completed/.test(document.querySelector('[data-testid=run-counts]')"
                               ".textContent)", timeout=30_000)
        page.wait_for_function("() => document.querySelector('[data-testid=timeline]').dataset.attempts === '1000'",
                               timeout=30_000)
        page.wait_for_function("() => document.querySelector('[data-testid=jobs-info]').textContent"
                               ".endsWith('of 1000 jobs') && [...document.querySelectorAll("
                               "'[data-testid=jobs-table] tbody tr')].every(r => r.dataset.state === 'completed')",
                               timeout=30_000)
        assert page.locator("[data-testid=jobs-table] tbody tr").count() == 100
        assert proc.wait(timeout=60) == 0
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
        _stop(proc)


def test_rerun_from_the_page_makes_a_linked_run(browser: Any, ui_server: UIServer, tmp_path: Path) -> None:
    """Rerun of a failed run, confirmed on its page, starts a new run that names the first as
    its origin and appears in the runs list."""
    run_id = _failed_run(ui_server, tmp_path)
    page = _page(browser, ui_server)
    try:
        page.goto(f"{ui_server.base_url}/#/run/{run_id}")
        page.wait_for_selector("[data-testid=run-status] [data-status=FAILED]", timeout=30_000)
        page.click("[data-testid=action-rerun]")
        assert page.locator("[data-testid=confirm-dialog]").is_visible()
        page.click("[data-testid=confirm-yes]")
        page.wait_for_selector("[data-testid=action-message].ok", timeout=30_000)
        link = page.locator("[data-testid=new-run]")
        new_id = (link.get_attribute("href") or "").rsplit("/", 1)[-1]
        assert new_id and new_id != run_id
        page.click("a[href='#/']")
        row = page.locator(f"tr[data-run='{new_id}']")
        row.wait_for(timeout=60_000)
        assert f"rerun of {run_id}" in row.inner_text()
        detail = _wait_run(ui_server, new_id, ("FAILED", "COMPLETED", "CANCELLED"))
        assert detail["summary"]["rerun_of"] == run_id
        assert detail["summary"]["status"] == "FAILED"  # the same tool fails the same way
        row.click()
        page.wait_for_selector("[data-testid=run-status] [data-status=FAILED]", timeout=30_000)
        assert f"rerun of {run_id}" in page.inner_text(".run-head .meta")
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()


def _node_point(page: Any, node_id: str, *, top: bool = False) -> tuple[float, float]:
    """Page coordinates of a graph node's centre (or of the inside of its top edge)."""
    box = page.locator("[data-testid=graph]").bounding_box()
    pos = page.evaluate("""([id, top]) => {
      const n = document.querySelector('[data-testid=graph]').sfGraph.cy.getElementById(id);
      if (!n.length) return null;
      const p = n.renderedPosition();
      return {x: p.x, y: top ? p.y - n.renderedOuterHeight() / 2 + 5 : p.y};
    }""", [node_id, top])
    assert pos is not None, f"node {node_id} is not drawn"
    return box["x"] + pos["x"], box["y"] + pos["y"]


def test_subworkflow_collapses_and_expands_in_the_graph(browser: Any, ui_server: UIServer, tmp_path: Path) -> None:
    """A nested subworkflow is a box holding its steps: a click collapses it into one node
    coloured by its steps, another click expands it; a click on an inner step filters the jobs."""
    shutil.copyfile(Path(__file__).resolve().parents[2] / "bench" / "workflows" / "echo.cwl", tmp_path / "echo.cwl")
    (tmp_path / "wf.cwl").write_text(SUBWORKFLOW)
    (tmp_path / "job.yml").write_text("x: a\n")
    run_id = f"s{uuid.uuid4().hex[:12]}"
    result = run_cli(["run", "--quiet", "--run-id", run_id, "--outdir", str(tmp_path / "out"),
                      str(tmp_path / "wf.cwl"), str(tmp_path / "job.yml")], ui_server.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    graph = _api(ui_server, f"/api/runs/{run_id}/graph")
    workflows = [n for n in graph["nodes"] if n["kind"] == "workflow"]
    assert len(workflows) == 1
    inner = workflows[0]["id"]
    inside = [n for n in graph["nodes"] if n["parent"] == inner and n["kind"] == "step"]
    assert len(inside) == 2, graph["nodes"]
    page = _page(browser, ui_server)
    try:
        page.goto(f"{ui_server.base_url}/#/run/{run_id}")
        page.wait_for_selector("[data-testid=run-status] [data-status=COMPLETED]", timeout=30_000)
        graph_box = page.locator("[data-testid=graph]")
        page.wait_for_function("() => Number(document.querySelector('[data-testid=graph]').dataset.nodes) > 0")
        expanded = int(graph_box.get_attribute("data-nodes") or 0)
        assert graph_box.get_attribute("data-collapsed") == ""

        page.mouse.click(*_node_point(page, inner, top=True))
        page.wait_for_function("id => document.querySelector('[data-testid=graph]').dataset.collapsed === id", arg=inner)
        collapsed = int(graph_box.get_attribute("data-nodes") or 0)
        assert collapsed < expanded - len(inside)  # the steps (and their ports) went into one node
        state = page.evaluate("id => document.querySelector('[data-testid=graph]').sfGraph.cy.getElementById(id)"
                              ".data('state')", inner)
        assert state == "completed"  # coloured by its steps

        page.mouse.click(*_node_point(page, inner))
        page.wait_for_function("() => document.querySelector('[data-testid=graph]').dataset.collapsed === ''")
        assert int(graph_box.get_attribute("data-nodes") or 0) == expanded

        # The same from the button row above the graph (reachable by keyboard).
        toggle = page.locator(f"[data-testid=subworkflows] button[data-workflow='{inner}']")
        assert toggle.get_attribute("aria-expanded") == "true"
        toggle.focus()
        page.keyboard.press("Enter")
        page.wait_for_function("id => document.querySelector('[data-testid=graph]').dataset.collapsed === id", arg=inner)
        assert toggle.get_attribute("aria-expanded") == "false"
        toggle.click()
        page.wait_for_function("() => document.querySelector('[data-testid=graph]').dataset.collapsed === ''")

        # A click on a step inside the box selects it (and only it): jobs filtered by that step.
        step = inside[0]
        page.mouse.click(*_node_point(page, step["id"]))
        page.wait_for_selector("[data-testid=step-filter]:not([hidden])")
        assert graph_box.get_attribute("data-collapsed") == ""
        page.wait_for_function("() => document.querySelector('[data-testid=jobs-info]').textContent.endsWith(' of 1 jobs')")
        assert page.locator("[data-testid=jobs-table] tbody tr").count() == 1
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()



def test_reused_jobs_are_counted_once(browser: Any, ui_server: UIServer, tmp_path: Path) -> None:
    """A rerun of a completed run reuses its jobs: the list and the run page count each job
    once (reused ones are part of completed) and the progress bar is full, not overflowing."""
    shutil.copyfile(Path(__file__).resolve().parents[2] / "bench" / "workflows" / "echo.cwl", tmp_path / "echo.cwl")
    (tmp_path / "wf.cwl").write_text(SUBWORKFLOW)
    (tmp_path / "job.yml").write_text("x: a\n")
    first, again = f"s{uuid.uuid4().hex[:12]}", f"r{uuid.uuid4().hex[:12]}"
    result = run_cli(["run", "--quiet", "--run-id", first, "--outdir", str(tmp_path / "o1"), str(tmp_path / "wf.cwl"),
                      str(tmp_path / "job.yml")], ui_server.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run_cli(["rerun", first, "--run-id", again, "--outdir", str(tmp_path / "o2"), "--quiet"],
                     ui_server.env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    jobs = _wait_run(ui_server, again, ("COMPLETED",))["summary"]["jobs"]
    assert jobs["reused"] == jobs["completed"] == jobs["requested"] == 3, jobs
    page = _page(browser, ui_server)
    try:
        row = page.locator(f"tr[data-run='{again}']")
        row.wait_for(timeout=30_000)
        page.wait_for_function("id => /3 done \\(3 reused\\)/.test(document.querySelector(`tr[data-run='${id}']`)"
                               ".textContent)", arg=again, timeout=30_000)
        widths = page.evaluate("id => [...document.querySelectorAll(`tr[data-run='${id}'] .progress .seg`)]"
                               ".map(s => parseFloat(s.style.width))", again)
        assert widths[0] == 100 and sum(widths) == 100, widths
        row.click()
        page.wait_for_selector("[data-testid=run-status] [data-status=COMPLETED]", timeout=30_000)
        counts = page.inner_text("[data-testid=run-counts]")
        assert "3 completed" in counts and "(3 reused)" in counts and "of 3 jobs" in counts, counts
        assert page.errors == []  # type: ignore[attr-defined]
    finally:
        page.context.close()
