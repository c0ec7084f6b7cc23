"""The UI server's HTTP API, against a real ``streamflow ui`` subprocess, a real nats-server
and real runs: access control, the JSON views, the SSE feeds, and the actions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import run_cli
from tests.ui.conftest import UIServer

SCATTER = """\
cwlVersion: v1.2
class: Workflow
requirements: {ScatterFeatureRequirement: {}}
inputs:
  items: {type: {type: array, items: int}}
  pause: float
outputs:
  out: {type: {type: array, items: File}, outputSource: work/out}
steps:
  work:
    run:
      class: CommandLineTool
      baseCommand: [sh, -c]
      arguments: ["sleep $(inputs.pause); echo item $(inputs.n)"]
      inputs: {n: int, pause: float}
      stdout: out.txt
      outputs: {out: stdout}
    scatter: n
    in: {n: items, pause: pause}
    out: [out]
"""

FAILING = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, "echo boom-on-stderr >&2; exit 3"]
stderr: err.txt
inputs: []
outputs: []
"""

_counter = iter(range(1_000_000))


def _run_id(prefix: str) -> str:
    return f"{prefix}{os.getpid() % 10000}x{next(_counter)}"


def _until(check: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _start_run(ui: UIServer, tmp: Path, run_id: str, *, items: int = 3, pause: float = 0.5) -> subprocess.Popen[str]:
    wf = tmp / "scatter.cwl"
    wf.write_text(SCATTER)
    job = tmp / "job.json"
    job.write_text(json.dumps({"items": list(range(items)), "pause": pause}))
    code = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, "run", "--quiet", "--run-id", run_id, "--outdir",
                             str(tmp / "out"), str(wf), str(job)], env=ui.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _events(ui: UIServer, run_id: str, *types: str) -> list[dict[str, Any]]:
    args = ["events", run_id, "--json"] + [x for t in types for x in ("--type", t)]
    done = run_cli(args, ui.env)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def client(ui_server: UIServer) -> Iterator[httpx.Client]:
    """An authenticated client (bearer token)."""
    with httpx.Client(base_url=ui_server.base_url, headers=ui_server.headers, timeout=30) as c:
        yield c


@pytest.fixture
def csrf(client: httpx.Client) -> str:
    """The CSRF value of the session."""
    return str(client.get("/api/session").json()["csrf"])


@pytest.fixture(scope="module")
def done_run(ui_server: UIServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A completed scatter run (3 jobs)."""
    run_id = _run_id("done")
    proc = _start_run(ui_server, tmp_path_factory.mktemp("done"), run_id, pause=0.0)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    return run_id


# --- access control -----------------------------------------------------------------------

GET_ROUTES = ["/api/session", "/api/runs", "/api/runs/stream", "/api/runs/{run}", "/api/runs/{run}/stream",
              "/api/runs/{run}/graph", "/api/runs/{run}/timeline", "/api/runs/{run}/jobs",
              "/api/runs/{run}/jobs/x-0", "/api/runs/{run}/events", "/api/nothing"]
POST_ROUTES = ["/api/runs/{run}/cancel", "/api/runs/{run}/resume", "/api/runs/{run}/rerun"]


def test_healthz_needs_no_token(ui_server: UIServer) -> None:
    r = httpx.get(ui_server.base_url + "/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def test_every_api_route_refuses_unauthenticated_and_wrong_tokens(ui_server: UIServer, done_run: str) -> None:
    wrong = {"Authorization": "Bearer " + "x" * 43}
    with httpx.Client(base_url=ui_server.base_url, timeout=10) as anon:
        for route in GET_ROUTES + POST_ROUTES:
            url = route.format(run=done_run)
            method = "POST" if route in POST_ROUTES else "GET"
            for headers in ({}, wrong, {"Cookie": "sf_ui=" + "y" * 43}):
                r = anon.request(method, url, headers=headers)
                assert r.status_code == 401, (method, url, headers, r.status_code)
                assert r.headers["content-type"] == "application/json"
                assert ui_server.token not in r.text
        page = anon.get("/")
        assert page.status_code == 401 and "Token required" in page.text
        assert anon.get("/static/timeline.js").status_code == 401
        assert anon.get("/?token=wrong").status_code == 401


def test_token_url_sets_the_cookie_and_redirects(ui_server: UIServer) -> None:
    with httpx.Client(base_url=ui_server.base_url, timeout=10) as browser:
        r = browser.get(f"/?token={ui_server.token}")
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"sf_ui={ui_server.token};")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        session = browser.get("/api/session")  # the cookie jar sends it now
        assert session.status_code == 200
        body = session.json()
        assert set(body) == {"csrf", "version"} and body["csrf"] and ui_server.token not in body["csrf"]
        home = browser.get("/")
        assert home.status_code == 200 and "text/html" in home.headers["content-type"]


def test_security_headers(client: httpx.Client) -> None:
    for url in ("/api/session", "/", "/healthz"):
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-frame-options"] == "DENY"


def test_state_changing_requests_need_csrf_and_own_origin(client: httpx.Client, csrf: str,
                                                           ui_server: UIServer) -> None:
    url = "/api/runs/nosuchrun/cancel"
    assert client.post(url, json={}).status_code == 403
    assert client.post(url, json={}, headers={"X-SF-CSRF": "nope"}).status_code == 403
    foreign = client.post(url, json={}, headers={"X-SF-CSRF": csrf, "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "cross-origin" in foreign.json()["error"]
    ok = client.post(url, json={}, headers={"X-SF-CSRF": csrf, "Origin": ui_server.base_url})
    assert ok.status_code == 404 and ok.json()["ok"] is False  # passed the checks: no such run
    assert client.get(url).status_code == 405  # GET never changes state
    assert client.put("/api/runs/nosuchrun", headers={"X-SF-CSRF": csrf}).status_code == 405


def test_wrong_host_is_refused(client: httpx.Client, ui_server: UIServer) -> None:
    port = ui_server.base_url.rsplit(":", 1)[1]
    assert client.get("/api/session", headers={"Host": f"evil.example:{port}"}).status_code == 400
    assert client.get("/", headers={"Host": "127.0.0.1:1"}).status_code == 421
    assert client.get("/api/session", headers={"Host": f"localhost:{port}"}).status_code == 200


def test_token_file_readable_by_others_is_refused(tmp_path: Path, ui_server: UIServer) -> None:
    token = tmp_path / "token"
    token.write_text("s" * 40 + "\n")
    token.chmod(0o644)
    done = run_cli(["ui", "--port", "0", "--token-file", str(token)], ui_server.env, timeout=60)
    assert done.returncode == 2 and "readable by others" in done.stderr and "s" * 40 not in done.stderr
    assert done.stdout == ""


def test_token_file_is_used(tmp_path: Path, ui_server: UIServer) -> None:
    from tests.ui.conftest import start_ui, stop_ui

    token = tmp_path / "token"
    token.write_text("t" * 40 + "\n")
    token.chmod(0o600)
    proc, base, printed = start_ui(ui_server.env, "--token-file", str(token))
    try:
        assert printed == "t" * 40
        assert httpx.get(base + "/api/session", headers={"Authorization": "Bearer " + "t" * 40}).status_code == 200
    finally:
        stop_ui(proc)


# --- views ----------------------------------------------------------------------------------


def test_views_of_a_completed_run(client: httpx.Client, ui_server: UIServer, done_run: str) -> None:
    runs = client.get("/api/runs", params={"status": "completed", "q": done_run}).json()["runs"]
    assert [r["run_id"] for r in runs] == [done_run]
    row = runs[0]
    assert set(row) >= {"run_id", "name", "status", "submitted_at", "ended_at", "duration", "rerun_of", "jobs"}
    assert row["jobs"]["completed"] == 3 and row["jobs"]["running"] == 0 and row["jobs"]["waiting"] == 0
    assert client.get("/api/runs", params={"status": "FAILED", "q": done_run}).json()["runs"] == []

    detail = client.get(f"/api/runs/{done_run}").json()
    status = json.loads(run_cli(["status", done_run, "--json"], ui_server.env).stdout)
    summary = detail["summary"]
    for key, value in status.items():  # the incremental counts agree with the read model's own
        if key == "jobs":
            assert {k: summary["jobs"][k] for k in value} == value
        else:
            assert summary[key] == value, key
    assert {s["name"]: s["state"] for s in detail["steps"]}["/work"] == "completed"
    assert len(detail["outputs"]["out"]) == 3

    timeline = client.get(f"/api/runs/{done_run}/timeline").json()
    report = json.loads(run_cli(["report", done_run, "--format", "json"], ui_server.env).stdout)
    assert [a["job"] for a in timeline["jobs"]] == [a["job"] for a in report["jobs"]]
    assert timeline["job_states"] == {"waiting": 0, "running": 0, "completed": 3, "failed": 0}

    page = client.get(f"/api/runs/{done_run}/jobs", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 3 and len(page["jobs"]) == 2
    assert client.get(f"/api/runs/{done_run}/jobs", params={"state": "failed"}).json()["total"] == 0
    assert client.get(f"/api/runs/{done_run}/jobs", params={"limit": "x"}).status_code == 400
    job = page["jobs"][0]
    detail_job = client.get(f"/api/runs/{done_run}/jobs/{job['job']}").json()
    assert detail_job["attempts"][0]["exit_code"] == 0 and detail_job["workdir"]
    # The command line as run, recorded by its JobCompleted (not just the tool's baseCommand).
    n = detail_job["inputs"]["n"]
    assert detail_job["command"] == ["sh", "-c", f"sleep 0.0; echo item {n}"], detail_job["command"]
    assert detail_job["command_note"] is None and detail_job["inputs"]["pause"] == 0.0
    # A completed run's job directories are removed (unless --leave-tmpdir): said, not hidden.
    assert detail_job["stdout_tail"] is None and "removed" in detail_job["tail_note"]
    assert client.get(f"/api/runs/{done_run}/jobs/nosuch-0").status_code == 404

    graph = client.get(f"/api/runs/{done_run}/graph").json()
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    step_ids = {s["id"] for s in detail["steps"]}
    assert {n["step"] for n in graph["nodes"] if n["kind"] in ("step", "input")} == step_ids
    assert "out:out" in kinds and all(e["source"] in kinds and e["target"] in kinds for e in graph["edges"])


def test_events_endpoint_filters_like_the_cli(client: httpx.Client, ui_server: UIServer, done_run: str) -> None:
    cli = _events(ui_server, done_run, "JobStarted", "JobCompleted")
    api = client.get(f"/api/runs/{done_run}/events", params=[("type", "JobStarted"), ("type", "JobCompleted")]).json()
    assert api["events"] == cli and len(cli) == 6
    first = client.get(f"/api/runs/{done_run}/events", params={"limit": 5}).json()
    assert [e["seq"] for e in first["events"]] == [1, 2, 3, 4, 5] and first["next_since"] == 5
    rest = client.get(f"/api/runs/{done_run}/events", params={"since": 5, "limit": 2}).json()
    assert [e["seq"] for e in rest["events"]] == [6, 7]
    step = client.get(f"/api/runs/{done_run}/events", params={"step": "/work"}).json()["events"]
    assert step and all(e["type"] not in ("RunSubmitted",) for e in step)
    assert client.get(f"/api/runs/{done_run}/events", params={"step": "nosuch"}).status_code == 400


def test_unknown_and_invalid_runs(client: httpx.Client) -> None:
    r = client.get("/api/runs/nosuchrun")
    assert r.status_code == 404 and r.json() == {"error": "no run 'nosuchrun'"}
    assert client.get("/api/runs/bad.id").status_code == 400
    assert client.get("/api/runs/nosuchrun/events").status_code == 404
    assert client.get("/api/runs/bad.id/stream").status_code == 400


def test_failed_job_shows_its_error_and_stderr(client: httpx.Client, ui_server: UIServer, tmp_path: Path) -> None:
    tool = tmp_path / "fail.cwl"
    tool.write_text(FAILING)
    run_id = _run_id("fail")
    done = run_cli(["run", "--run-id", run_id, "--outdir", str(tmp_path / "out"), str(tool)], ui_server.env)
    assert done.returncode == 1
    detail = client.get(f"/api/runs/{run_id}").json()
    assert detail["summary"]["status"] == "FAILED" and detail["summary"]["error"]
    failed = client.get(f"/api/runs/{run_id}/jobs", params={"state": "failed"}).json()["jobs"]
    assert len(failed) == 1 and failed[0]["exit_code"] == 3
    job = client.get(f"/api/runs/{run_id}/jobs/{failed[0]['job']}").json()
    assert "boom-on-stderr" in job["stderr_tail"] and job["attempts"][0]["error"]
    assert job["command"] == ["sh", "-c", "echo boom-on-stderr >&2; exit 3"] == job["attempts"][0]["command"]


# --- live feeds and actions -----------------------------------------------------------------


def _sse(response: httpx.Response) -> Iterator[tuple[str, Any]]:
    event, data = "", ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif line == "" and event:
            yield event, json.loads(data)
            event, data = "", ""


def test_live_run_in_list_and_its_stream(client: httpx.Client, ui_server: UIServer, tmp_path: Path) -> None:
    run_id = _run_id("live")
    proc = _start_run(ui_server, tmp_path, run_id, items=4, pause=1.0)
    try:
        def running() -> bool:
            rows = client.get("/api/runs", params={"q": run_id}).json()["runs"]
            return bool(rows) and rows[0]["status"] in ("SUBMITTED", "RUNNING")

        _until(running, what="the run in /api/runs")
        seen: list[tuple[str, Any]] = []
        with client.stream("GET", f"/api/runs/{run_id}/stream", timeout=60) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            for item in _sse(r):
                seen.append(item)
        proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    kinds = [k for k, _ in seen]
    assert kinds[0] == "snapshot" and kinds[-1] == "end" and "update" in kinds
    snapshot = seen[0][1]
    assert set(snapshot) == {"summary", "steps", "timeline_version"}
    assert snapshot["summary"]["status"] in ("SUBMITTED", "RUNNING")
    updates = [d for k, d in seen if k == "update"]
    assert updates[-1]["summary"]["status"] == "COMPLETED" and updates[-1]["summary"]["jobs"]["completed"] == 4
    attempts = {a["job"]: a for u in updates for a in u["attempts"]}
    assert len(attempts) == 4 and all(a["status"] == "COMPLETED" for a in attempts.values())
    seqs = [e["seq"] for u in updates for e in u["events"]]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert seen[-1][1]["status"] == "COMPLETED"
    # A stream opened after the end: the snapshot, then the end at once.
    with client.stream("GET", f"/api/runs/{run_id}/stream") as r:
        late = list(_sse(r))
    assert [k for k, _ in late] == ["snapshot", "end"] and late[0][1]["summary"]["status"] == "COMPLETED"


def test_runs_stream_sends_the_list(client: httpx.Client, done_run: str) -> None:
    with client.stream("GET", "/api/runs/stream") as r:
        event, data = next(_sse(r))
    assert event == "runs" and done_run in {row["run_id"] for row in data["runs"]}


def test_cancel_resume_and_rerun_through_the_api(client: httpx.Client, csrf: str, ui_server: UIServer,
                                                 tmp_path: Path) -> None:
    run_id = _run_id("act")
    proc = _start_run(ui_server, tmp_path, run_id, items=3, pause=3.0)
    post = {"X-SF-CSRF": csrf, "Origin": ui_server.base_url}
    try:
        _until(lambda: client.get(f"/api/runs/{run_id}/jobs", params={"state": "running"}).json()["total"]
               if client.get("/api/runs", params={"q": run_id}).json()["runs"] else 0, what="a running job")
        r = client.post(f"/api/runs/{run_id}/cancel", json={"reason": "from the API test"}, headers=post)
        assert r.status_code == 200 and r.json()["ok"], r.text
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    cancelled = _events(ui_server, run_id, "RunCancelled")
    assert len(cancelled) == 1 and cancelled[0]["reason"] == "from the API test"
    again = client.post(f"/api/runs/{run_id}/cancel", json={}, headers=post).json()
    assert again["ok"] and "already CANCELLED" in again["message"]

    r = client.post(f"/api/runs/{run_id}/resume", headers=post)
    assert r.status_code == 200 and r.json()["ok"] and isinstance(r.json()["pid"], int), r.text
    _until(lambda: client.get(f"/api/runs/{run_id}").json()["summary"]["status"] == "COMPLETED", timeout=120,
           what="the resumed run to complete")
    assert client.get(f"/api/runs/{run_id}").json()["summary"]["jobs"]["completed"] == 3

    r = client.post(f"/api/runs/{run_id}/rerun", headers=post)
    body = r.json()
    assert r.status_code == 200 and body["ok"] and body["run_id"], r.text
    new = body["run_id"]
    _until(lambda: (client.get(f"/api/runs/{new}").json().get("summary") or {}).get("status") == "COMPLETED",
           timeout=120, what="the rerun to complete")
    summary = client.get(f"/api/runs/{new}").json()["summary"]
    assert summary["rerun_of"] == run_id and summary["jobs"]["reused"] == 3
    rows = {row["run_id"]: row for row in client.get("/api/runs").json()["runs"]}
    assert rows[new]["rerun_of"] == run_id
    assert client.post("/api/runs/nosuchrun/resume", headers=post).status_code == 404


# --- the feeds' cost ------------------------------------------------------------------------


def _recorder() -> Callable[[str, Any], Any]:
    """Make records of run ``r1`` in sequence (one second apart)."""
    from events.log import Record
    from events.schema import Envelope

    seq = iter(range(1, 100_000))

    def record(subject: str, body: Any) -> Record:
        n = next(seq)
        return Record(stream_seq=n, subject=f"sf.ev.r1.{subject}", seq=n, time=1000.0 + n,
                      envelope=Envelope(event_id=f"e{n}", run_id="r1", producer="test", body=body))

    return record


def test_a_feed_update_carries_only_what_changed() -> None:
    """After 2,000 requested jobs, one JobStarted gives one step row and one attempt row, and
    the incremental counts equal the read model's own (``RunSummary.to_dict``)."""
    from events.schema import JobCompleted, JobRequested, JobStarted, RunStarted, RunSubmitted
    from streamflow.ui.live import RunFold

    record = _recorder()
    fold = RunFold("r1", track=True)
    fold.apply(record("wf", RunSubmitted(name="big", workflow="big.cwl", steps={"s1": "/work", "s2": "/other"})))
    fold.apply(record("wf", RunStarted()))
    for i in range(2000):
        fold.apply(record("step.s1", JobRequested(job=f"s1-{i}", step="s1", tag=str(i))))
    fold.take_changes()
    fold.apply(record("job.s1-5", JobStarted(job="s1-5")))
    steps, attempts = fold.take_changes()
    assert [s["id"] for s in steps] == ["s1"] and steps[0]["jobs"] == {"waiting": 1999, "running": 1,
                                                                       "completed": 0, "failed": 0}
    assert [a["job"] for a in attempts] == ["s1-5"]
    fold.apply(record("job.s1-5", JobCompleted(job="s1-5")))
    expected = fold.summary.to_dict()["jobs"]
    counts = fold.job_counts()
    assert {k: counts[k] for k in expected} == expected and counts["running"] == 0 and counts["waiting"] == 1999
    assert fold.take_changes()[0][0]["state"] == "running"


def test_a_large_timeline_is_aggregated_per_lane() -> None:
    """Over 2,000 attempts the timeline sends per-lane buckets and only the failed attempts."""
    from events.schema import JobCompleted, JobFailed, JobRequested, JobScheduled, JobStarted, RunSubmitted
    from streamflow.ui.api import AGGREGATE_OVER, timeline_view
    from streamflow.ui.live import RunFold

    record = _recorder()
    fold = RunFold("r1", track=True)
    fold.apply(record("wf", RunSubmitted(name="big", workflow="big.cwl", steps={"s1": "/work"})))
    jobs = AGGREGATE_OVER + 100
    for i in range(jobs):
        fold.apply(record("step.s1", JobRequested(job=f"s1-{i}", step="s1", tag=str(i))))
        fold.apply(record(f"alloc.s1-{i}", JobScheduled(job=f"s1-{i}", deployment="d", location=f"n{i % 2}")))
        fold.apply(record(f"job.s1-{i}", JobStarted(job=f"s1-{i}")))
    for i in range(jobs):
        end = JobFailed(job=f"s1-{i}", error="boom") if i == 7 else JobCompleted(job=f"s1-{i}")
        fold.apply(record(f"job.s1-{i}", end))
    data = timeline_view(fold)
    assert data["aggregated"] is True and [a["job"] for a in data["jobs"]] == ["s1-7"]
    lanes = {lane["lane"]: lane for lane in data["buckets"]["lanes"]}
    assert set(lanes) == {"d/n0", "d/n1"}
    assert sum(lane["completed"] for lane in lanes.values()) == jobs - 1
    assert sum(lane["failed"] for lane in lanes.values()) == 1
    assert max(max(lane["running"]) for lane in lanes.values()) > 0
    by_step = timeline_view(fold, lane="step")["buckets"]
    assert [lane["lane"] for lane in by_step["lanes"]] == ["/work"]
