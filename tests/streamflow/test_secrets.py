"""Issue 14 (14): inputs marked secret (``cwltool:Secrets``) never reach the log, reports or crates.

The command still gets the value; the whole event log of the run, ``status``, ``report``
and the RO-Crate are grepped for it.
"""

from __future__ import annotations

import hashlib
import json
import stat
import subprocess
from pathlib import Path

import pytest

from streamflow.bus import EmbeddedServer
from streamflow.secrets import PLACEHOLDER, SecretNotAvailableError, conceal, reveal, secret_inputs
from tests.conftest import run_cli

SECRET = "hunter2-s3cr3t-VALUE"

TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
$namespaces:
  cwltool: "http://commonwl.org/cwltool#"
hints:
  - class: cwltool:Secrets
    secrets: [password]
baseCommand: [sh, -c, 'printf %s "$0" | sha1sum | cut -c1-40 > seen.txt']
inputs:
  password: {type: string, inputBinding: {position: 1}}
outputs:
  seen: {type: File, outputBinding: {glob: seen.txt}}
"""

WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
$namespaces:
  cwltool: "http://commonwl.org/cwltool#"
hints:
  - class: cwltool:Secrets
    secrets: [password]
inputs:
  password: string
outputs:
  seen: {type: File, outputSource: use/seen}
steps:
  use:
    run: tool.cwl
    in: {password: password}
    out: [seen]
"""


def test_secret_inputs_are_stored_apart_and_revealed_only_to_the_command(
        tmp_path: Path, sf_env: dict[str, str], nats_server: EmbeddedServer) -> None:
    (tmp_path / "tool.cwl").write_text(TOOL)
    (tmp_path / "wf.cwl").write_text(WORKFLOW)
    (tmp_path / "job.json").write_text(json.dumps({"password": SECRET}))
    result = run_cli(["run", "--outdir", str(tmp_path / "out"), "wf.cwl", "job.json"], sf_env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # The command saw the value itself (its digest), not the placeholder.
    assert (tmp_path / "out" / "seen.txt").read_text().strip() == hashlib.sha1(SECRET.encode()).hexdigest()
    run_id = result.stderr.split("streamflow: run ", 1)[1].split()[0]

    events = run_cli(["events", run_id, "--json"], sf_env)
    assert events.returncode == 0
    types = {json.loads(line)["type"] for line in events.stdout.splitlines()}
    assert {"RunSubmitted", "TokenEmitted", "JobRequested", "JobCompleted"} <= types
    assert SECRET not in events.stdout and PLACEHOLDER.search(events.stdout)
    for command in (["status", run_id, "--json"], ["report", run_id, "--format", "json"]):
        shown = run_cli(command, sf_env)
        assert shown.returncode == 0, shown.stderr
        assert SECRET not in shown.stdout
    crate = tmp_path / "crate"
    prov = run_cli(["prov", run_id, "--output", str(crate)], sf_env)
    assert prov.returncode == 0, prov.stderr
    for path in crate.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    # The value is kept in a 0600 file of a 0700 directory under STREAMFLOW_HOME.
    store = Path(sf_env["STREAMFLOW_HOME"]) / "secrets"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    kept = [p for p in store.iterdir() if p.read_text() == SECRET]
    assert kept and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in kept)
    # Nowhere in the server's files on disk either (the event stream, the task queue, KV buckets).
    found = subprocess.run(["grep", "-rl", SECRET, str(nats_server.store_dir)], capture_output=True, text=True,
                           check=False)
    assert found.stdout == ""


def test_conceal_and_reveal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path))
    hints = [{"class": "cwltool:Secrets", "secrets": ["file:///x/wf.cwl#/password", "token"]}]
    names = secret_inputs(hints)
    assert names == {"password", "token"}
    concealed = conceal({"password": "pw", "token": ["a", "b"], "other": "visible"}, names)
    assert concealed["other"] == "visible" and "pw" not in json.dumps(concealed)
    assert conceal(concealed, names) == concealed  # idempotent: placeholders stay
    assert reveal(f"--pass={concealed['password']}") == "--pass=pw"
    assert [reveal(v) for v in concealed["token"]] == ["a", "b"]
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(SecretNotAvailableError, match="not available on this machine"):
        reveal(concealed["password"])
