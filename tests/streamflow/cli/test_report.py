"""``streamflow report``: the job timeline of a run, from the event log."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from tests.conftest import run_cli
from tests.streamflow.cli.conftest import FinishedRun, run_workflow


def _report(run: FinishedRun, *args: str) -> str:
    result = run_cli(["report", run.run_id, *args], run.env, cwd=run.root)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_report_json_has_one_row_per_job_with_ordered_times(finished_run: FinishedRun) -> None:
    """The JSON report has one attempt per scattered job, placed on localhost, with ordered times."""
    data = json.loads(_report(finished_run, "--format", "json"))
    assert data["run_id"] == finished_run.run_id
    assert data["status"] == "COMPLETED"
    jobs = data["jobs"]
    assert sorted(j["tag"] for j in jobs) == ["0.0", "0.1", "0.2"]
    for job in jobs:
        assert job["step_name"] == "/echo"
        assert (job["deployment"], job["location"]) == ("__LOCAL__", "localhost")
        assert job["status"] == "COMPLETED" and job["exit_code"] == 0
        assert job["requested_at"] <= job["scheduled_at"] <= job["start"] <= job["end"]
        assert abs(job["duration"] - (job["end"] - job["start"])) < 1e-6
        assert data["submitted_at"] <= job["start"] and job["end"] <= data["ended_at"]
    assert data["waiting"] == []


def test_report_html_is_self_contained_and_embeds_the_data(finished_run: FinishedRun) -> None:
    """The HTML report inlines plotly.js, loads nothing external and embeds the same data as the JSON."""
    target = finished_run.root / "report.html"
    _report(finished_run, "--output", str(target))
    page = target.read_text()
    assert not re.search(r"<script[^>]+src=", page)
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js itself is inlined
    found = re.search(r'<script type="application/json" id="sf-report-data">(.*?)</script>', page, re.S)
    assert found is not None
    embedded = json.loads(found.group(1))
    assert embedded == json.loads(_report(finished_run, "--format", "json"))


def test_report_csv_rows_match_the_json(finished_run: FinishedRun) -> None:
    """The CSV report has a header and the same attempts as the JSON report."""
    rows = list(csv.DictReader(io.StringIO(_report(finished_run, "--format", "csv"))))
    data = json.loads(_report(finished_run, "--format", "json"))
    assert [r["job"] for r in rows] == [j["job"] for j in data["jobs"]]
    assert {r["location"] for r in rows} == {"localhost"}
    assert all(float(r["end"]) >= float(r["start"]) for r in rows)


def test_report_shows_a_failed_attempt(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """A tool that exits 3 appears as a FAILED attempt with its exit code and error."""
    run = run_workflow(tmp_path, sf_env, failing=True)
    assert run.returncode == 1
    data = json.loads(_report(run, "--format", "json"))
    assert data["status"] == "FAILED"
    [job] = data["jobs"]
    assert job["status"] == "FAILED" and job["exit_code"] == 3 and job["end"] >= job["start"]


def test_report_of_an_unknown_run_is_a_usage_error(tmp_path: Path, sf_env: dict[str, str]) -> None:
    """Asking for a run that is not in the log exits with 2 and says so."""
    result = run_cli(["report", "nosuchrun", "--format", "json"], sf_env, cwd=tmp_path)
    assert result.returncode == 2
    assert "nosuchrun" in result.stderr
