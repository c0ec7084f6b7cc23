"""Bus security: token, TLS with client certificates, user/password, least privilege, no secret in logs or events."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import AgentProcess, ConfiguredServer, write_scatter_workflow

from events.log import EventLog
from streamflow.bus import BusOptions, EmbeddedServer, connect
from streamflow.errors import BusError

_CLI = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"


def _cli(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _CLI, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_NATS")}
    env["STREAMFLOW_HOME"] = str(tmp_path / "sfhome")
    env["TMPDIR"] = str(tmp_path)
    return env


async def _assert_refused(options: BusOptions, timeout: float = 30) -> None:
    """The connection must be refused with a ``BusError``, within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            nc = await connect(options)
    except BusError:
        return
    except TimeoutError:
        pytest.fail(f"connect() neither connected nor failed within {timeout}s")
    await nc.close()
    raise AssertionError("connected with incomplete credentials")


async def test_embedded_server_refuses_clients_without_its_token(tmp_path: Path) -> None:
    """The embedded server requires its generated token: none or a wrong one is a ``BusError``."""
    with EmbeddedServer(tmp_path / "js") as server:
        nc = await connect(server.options())
        await nc.close()
        for token in (None, "wrong-" + secrets.token_hex(4)):
            await _assert_refused(BusOptions(servers=[server.url], token=token))
        conf = (tmp_path / "js.conf")
        assert conf.stat().st_mode & 0o077 == 0  # the token file is private to the user


# --- TLS -----------------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_certs(base: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, with the openssl CLI."""
    base.mkdir(parents=True, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=sf-test-ca",
             cwd=base)
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        (base / f"{name}.ext").write_text(ext)
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN=sf-{name}", cwd=base)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=base)
    return {name: base / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key")}


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[ConfiguredServer, dict[str, Path], str]]:
    """A JetStream server requiring TLS with client certificates (mutual TLS) and a user/password."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make test certificates")
    certs = _make_certs(tmp_path / "certs")
    password = "pw-" + secrets.token_hex(8)
    server = ConfiguredServer(tmp_path / "tls", f"""
listen: 127.0.0.1:{{port}}
tls {{
  cert_file: {json.dumps(str(certs["server.pem"]))}
  key_file: {json.dumps(str(certs["server.key"]))}
  ca_file: {json.dumps(str(certs["ca.pem"]))}
  verify: true
  timeout: 2
}}
authorization {{ users: [ {{ user: alice, password: {json.dumps(password)} }} ] }}
jetstream {{ store_dir: {{store}} }}
""")
    server.start()
    try:
        yield server, certs, password
    finally:
        server.stop()


def _tls_options(server: ConfiguredServer, certs: dict[str, Path], password: str | None, *, ca: bool = True,
                 cert: bool = True) -> BusOptions:
    return BusOptions(
        servers=[f"tls://127.0.0.1:{server.port}"],
        user="alice" if password else None, password=password,
        tls_ca=str(certs["ca.pem"]) if ca else None,
        tls_cert=str(certs["client.pem"]) if cert else None,
        tls_key=str(certs["client.key"]) if cert else None,
    )


async def test_tls_with_ca_certificate_and_password_connects(
        tls_server: tuple[ConfiguredServer, dict[str, Path], str]) -> None:
    """With the CA, a client certificate and the password, a client connects over TLS and uses JetStream."""
    server, certs, password = tls_server
    nc = await connect(_tls_options(server, certs, password))
    try:
        assert nc.connected_url is not None and nc.connected_url.scheme == "tls"
        await EventLog(nc).setup()
    finally:
        await nc.close()


@pytest.mark.parametrize("missing", ["password", "client certificate", "CA"])
async def test_tls_server_refuses_incomplete_credentials(
        tls_server: tuple[ConfiguredServer, dict[str, Path], str], missing: str) -> None:
    """Without the password, the client certificate or the CA (server not verifiable), the connection is refused."""
    server, certs, password = tls_server
    options = _tls_options(server, certs, None if missing == "password" else password,
                           cert=missing != "client certificate", ca=missing != "CA")
    await _assert_refused(options)


async def test_run_end_to_end_over_tls(tmp_path: Path, tls_server: tuple[ConfiguredServer, dict[str, Path], str]) -> None:
    """``streamflow run`` with the TLS and password flags runs a workflow; the password shows nowhere in its output."""
    server, certs, password = tls_server
    workflow, job = write_scatter_workflow(tmp_path / "wf", 3)
    flags = ["--nats", f"tls://127.0.0.1:{server.port}", "--nats-tls-ca", str(certs["ca.pem"]),
             "--nats-tls-cert", str(certs["client.pem"]), "--nats-tls-key", str(certs["client.key"]),
             "--nats-user", "alice", "--nats-password", password]
    result = _cli(["run", str(workflow), str(job), "--run-id", "tlsrun", "--debug", "--outdir",
                   str(tmp_path / "out"), *flags], _env(tmp_path))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["squares"] == [0, 1, 4]
    events = _cli(["events", "tlsrun", "--json", *flags], _env(tmp_path))
    assert events.returncode == 0, events.stderr
    for text in (result.stdout, result.stderr, events.stdout, events.stderr):
        assert password not in text
    try:
        without_ca = _cli(["events", "tlsrun", *flags[:2], *flags[4:]], _env(tmp_path), timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail("a client that cannot verify the server neither connected nor gave up")
    assert without_ca.returncode != 0
    assert "bus error" in without_ca.stderr
    assert password not in without_ca.stderr


# --- secrets ---------------------------------------------------------------------------


async def test_token_never_reaches_logs_or_events(tmp_path: Path) -> None:
    """A run, an agent and ``events --json`` with ``--nats-token SECRET --debug``: SECRET is in no output and no event."""
    secret = "SECRET" + secrets.token_hex(8)
    with EmbeddedServer(tmp_path / "js", token=secret) as server:
        env = _env(tmp_path)
        env["STREAMFLOW_ACK_WAIT"] = "5"
        flags = ["--nats", server.url, "--nats-token", secret]
        nc = await connect(server.options())
        await EventLog(nc).setup()
        await nc.close()
        # The agent gets the token inside its URL: it must not log it either.
        agent = AgentProcess.start("a", env, tmp_path, "--debug", "--workers", "1", "--nats",
                                   f"nats://{secret}@127.0.0.1:{server.port}")
        try:
            await asyncio.to_thread(agent.wait_started)
            workflow, job = write_scatter_workflow(tmp_path / "wf", 2)
            run = _cli(["run", str(workflow), str(job), "--run-id", "secret", "--workers", "0", "--debug",
                        "--outdir", str(tmp_path / "out"), *flags], env)
            assert run.returncode == 0, run.stderr
            events = _cli(["events", "secret", "--json", *flags], env)
            assert events.returncode == 0, events.stderr
            assert '"JobStarted"' in events.stdout
            # Credentials in the URL itself must not leak either.
            url_flags = ["--nats", f"nats://{secret}@127.0.0.1:{server.port}"]
            listed = _cli(["list", *url_flags], env)
            assert listed.returncode == 0, listed.stderr
            agent.signal(signal.SIGTERM)
            assert await asyncio.to_thread(agent.process.wait, 30) == 0
            outputs = [run.stdout, run.stderr, events.stdout, events.stderr, listed.stdout, listed.stderr,
                       agent.stderr_path.read_text()]
            assert "job_completed" in outputs[-1]
            for text in outputs:
                assert secret not in text
        finally:
            agent.stop()


# --- least privilege --------------------------------------------------------------------

# Wildcards match whole tokens only: one line per deployment's consumer (workers-<deployment>).
AGENT_PERMISSIONS = """\
{
  publish: {
    allow: [
      "$JS.API.STREAM.INFO.SF_EVENTS",
      "$JS.API.STREAM.INFO.SF_TASKS",
      "$JS.API.CONSUMER.CREATE.SF_TASKS.workers-__LOCAL__.sf.task.__LOCAL__.>",
      "$JS.API.CONSUMER.MSG.NEXT.SF_TASKS.workers-__LOCAL__",
      "$JS.ACK.SF_TASKS.workers-__LOCAL__.>",
      "$JS.API.STREAM.MSG.GET.SF_EVENTS",
      "$JS.API.DIRECT.GET.SF_EVENTS.>",
      "sf.ev.*.job.*",
      "$JS.API.STREAM.INFO.KV_sf_agents",
      "$KV.sf_agents.__LOCAL__.>"
    ]
  }
  subscribe: { allow: ["_INBOX.>"] }
}
"""


async def test_agent_runs_with_least_privilege(tmp_path: Path) -> None:
    """An agent whose NATS user may only pull tasks, ack them, read the log and write job events runs a whole run."""
    admin_pw, agent_pw = "adm-" + secrets.token_hex(6), "agt-" + secrets.token_hex(6)
    server = ConfiguredServer(tmp_path / "perm", f"""
listen: 127.0.0.1:{{port}}
authorization {{
  users: [
    {{ user: submitter, password: {json.dumps(admin_pw)} }}
    {{ user: agent, password: {json.dumps(agent_pw)}, permissions: {AGENT_PERMISSIONS} }}
  ]
}}
jetstream {{ store_dir: {{store}} }}
""")
    server.start()
    agent = None
    try:
        url = f"nats://127.0.0.1:{server.port}"
        env = _env(tmp_path)
        env["STREAMFLOW_ACK_WAIT"] = "5"
        nc = await connect(BusOptions(servers=[url], user="submitter", password=admin_pw))
        await EventLog(nc).setup()
        await nc.close()
        agent = AgentProcess.start("restricted", env, tmp_path, "--workers", "2", "--nats", url,
                                   "--nats-user", "agent", "--nats-password", agent_pw)
        await asyncio.to_thread(agent.wait_started)
        workflow, job = write_scatter_workflow(tmp_path / "wf", 4)
        run = _cli(["run", str(workflow), str(job), "--run-id", "leastpriv", "--workers", "0", "--outdir",
                    str(tmp_path / "out"), "--nats", url, "--nats-user", "submitter", "--nats-password", admin_pw],
                   env, timeout=90)
        assert run.returncode == 0, run.stderr + agent.stderr_path.read_text()
        assert json.loads(run.stdout)["squares"] == [0, 1, 4, 9]
        assert "Violation" not in server.log_path.read_text()
        # ... and the permissions do bite: the agent's user cannot write other aggregates.
        restricted = await connect(BusOptions(servers=[url], user="agent", password=agent_pw))
        try:
            with pytest.raises(Exception):  # noqa: B017 - a timeout or no-responders: the publish is dropped
                await restricted.jetstream(timeout=1).publish("sf.ev.leastpriv.wf", b"forged")
        finally:
            await restricted.close()
        denied = [line for line in server.log_path.read_text().splitlines() if "Violation" in line]
        assert len(denied) == 1 and '"sf.ev.leastpriv.wf"' in denied[0]
        agent.signal(signal.SIGTERM)
        assert await asyncio.to_thread(agent.process.wait, 30) == 0
    finally:
        if agent is not None:
            agent.stop()
        server.stop()
