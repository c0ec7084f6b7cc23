"""Tests of the ssh connector's set-up against a real sshd: host keys, credentials, configuration,
the deployment manager, and the fixture's hidden-namespace option. Passwords are tested against
an asyncssh server inside the test process (the fixture's sshd only accepts keys).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import jsonschema
import pytest
from structlog.testing import capture_logs

from streamflow.connectors.ssh import SSHConnector
from streamflow.core.deployment import DeploymentConfig, ExecutionLocation
from streamflow.deployment.manager import DefaultDeploymentManager
from streamflow.errors import ConfigError, DeploymentError, TransferError
from tests.backends.sshd import SshdInfo, sshd, sshd_skip_reason, start_sshd, stop_sshd
from tests.streamflow.connectors.test_ssh import NODE, OTHER_NODE, _connector, _pid_alive

__all__ = ["sshd"]  # the session fixture, imported so that pytest finds it


# --- host keys, credentials, configuration --------------------------------------------------------


async def test_host_key_checking_is_on_by_default(
    sshd: SshdInfo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without knownHostsFile, ~/.ssh/known_hosts is used: an unknown host key is refused at once."""
    monkeypatch.setenv("HOME", str(tmp_path))
    config = sshd.connector_config(retries=3, retryDelay=5)
    del config["knownHostsFile"]
    connector = SSHConnector("ssh", str(tmp_path), **config)
    start = time.monotonic()
    with pytest.raises(DeploymentError) as info:
        await connector.deploy(external=False)
    assert time.monotonic() - start < 4  # not retried
    message = str(info.value)
    assert "not trusted" in message and str(tmp_path / ".ssh" / "known_hosts") in message
    assert info.value.retryable is False


async def test_host_key_mismatch_is_refused(sshd: SshdInfo, tmp_path: Path) -> None:
    """A known_hosts file with another key for the host is refused."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    key = (tmp_path / "k.pub").read_text().split()
    (tmp_path / "kh").write_text(f"[127.0.0.1]:{sshd.port} {key[0]} {key[1]}\n")
    connector = _connector(sshd, tmp_path, knownHostsFile="kh")  # relative to config_dir
    with pytest.raises(DeploymentError, match="not trusted"):
        await connector.deploy(external=False)


async def test_check_host_key_false_connects_and_warns(sshd: SshdInfo, tmp_path: Path) -> None:
    """checkHostKey: false skips the check, with a warning."""
    config = sshd.connector_config(checkHostKey=False, nodes=["localhost"])
    del config["knownHostsFile"]
    connector = SSHConnector("insecure-test", str(tmp_path), **config)
    with capture_logs() as logs:
        await connector.deploy(external=False)
    try:
        assert await connector.run(OTHER_NODE, ["echo", "ok"], capture_output=True) == ("ok", 0)
    finally:
        await connector.undeploy(external=False)
    assert any(entry["event"] == "ssh_host_key_check_disabled" for entry in logs)


async def test_wrong_key_fails_clearly_after_retries(sshd: SshdInfo, tmp_path: Path) -> None:
    """A key the server does not accept fails after 1 + retries attempts with a clear message."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "wrong")], check=True)
    connector = _connector(sshd, tmp_path, sshKey="wrong", retries=2, retryDelay=0.2)
    start = time.monotonic()
    with capture_logs() as logs, pytest.raises(DeploymentError) as info:
        await connector.deploy(external=False)
    assert time.monotonic() - start >= 0.4
    assert "after 3 attempt(s)" in str(info.value) and "PermissionDenied" in str(info.value)
    assert "sshKey" in str(info.value) and info.value.retryable is False
    assert sum(entry["event"] == "ssh_connect_failed" for entry in logs) == 3


async def test_passphrase_protected_key(sshd: SshdInfo, tmp_path: Path) -> None:
    """sshKeyPassphraseFile unlocks the key; a wrong passphrase is a ConfigError without it."""
    key = tmp_path / "locked"
    shutil.copy(sshd.client_key, key)
    secret = "pa55-Phrase-9f3c"
    subprocess.run(["ssh-keygen", "-q", "-p", "-N", secret, "-f", str(key)], check=True)
    (tmp_path / "pass").write_text(secret + "\n")
    with capture_logs() as logs:
        connector = _connector(sshd, tmp_path, sshKey="locked", sshKeyPassphraseFile="pass")
        await connector.deploy(external=False)
        try:
            assert await connector.run(NODE, ["echo", "in"], capture_output=True) == ("in", 0)
        finally:
            await connector.undeploy(external=False)
        (tmp_path / "bad").write_text("not-the-" + secret)
        with pytest.raises(ConfigError) as info:
            _connector(sshd, tmp_path, sshKey="locked", sshKeyPassphraseFile="bad")
    assert "'sshKey'" in str(info.value) and secret not in str(info.value)
    assert secret not in repr(logs)


def test_config_errors_name_deployment_and_field(tmp_path: Path) -> None:
    """Duplicate nodes and unreadable files are ConfigErrors naming the deployment and field."""
    with pytest.raises(ConfigError, match=r"'cluster'.*'nodes'"):
        SSHConnector("cluster", str(tmp_path), nodes=["a", {"hostname": "a", "port": 2}])
    with pytest.raises(ConfigError, match=r"'cluster'.*'passwordFile'"):
        SSHConnector("cluster", str(tmp_path), nodes=["a"], passwordFile="missing")
    with pytest.raises(ConfigError, match=r"'cluster'.*'sshKey'"):
        SSHConnector("cluster", str(tmp_path), nodes=["a"], sshKey="missing")


def test_schema_describes_every_key() -> None:
    """The schema is valid draft 2020-12, closed, with a description on every property."""
    schema = SSHConnector.get_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    node_schema = schema["properties"]["nodes"]["items"]["oneOf"][1]
    for properties in (schema["properties"], node_schema["properties"]):
        for key, value in properties.items():
            assert value.get("description"), key
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"nodes": ["a"], "password": "x"}, schema)


async def test_built_by_the_deployment_manager(sshd: SshdInfo, tmp_path: Path) -> None:
    """DeploymentConfig(type='ssh') builds, deploys and undeploys an SSHConnector."""

    class _Context:
        config: dict[str, Any] = {"config_dir": str(tmp_path)}

    shutil.copy(sshd.known_hosts_file, tmp_path / "known_hosts")
    config = sshd.connector_config(knownHostsFile="known_hosts")
    manager = DefaultDeploymentManager(_Context())  # type: ignore[arg-type]
    await manager.deploy(DeploymentConfig(name="hpc", type="ssh", config=config))
    try:
        connector = await manager.get_connector("hpc")
        assert isinstance(connector, SSHConnector)
        location = ExecutionLocation("127.0.0.1", "hpc", hostname="127.0.0.1")
        assert await connector.run(location, ["echo", "managed"], capture_output=True) == ("managed", 0)
        assert set(await connector.get_available_locations()) == {"127.0.0.1"}
    finally:
        await manager.close()


# --- the hidden-namespace option of the fixture ---------------------------------------------------


@pytest.fixture
def hidden_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SshdInfo, Path]]:
    """An sshd whose sessions see an empty tmpfs over a local directory holding a file."""
    if (reason := sshd_skip_reason()) is not None:
        pytest.skip(reason)
    secret_dir = tmp_path_factory.mktemp("local-only")
    (secret_dir / "data.txt").write_text("local\n")
    info = start_sshd(tmp_path_factory.mktemp("sshd-hidden"), hide=[secret_dir], setenv={"SF_REMOTE": "yes"})
    try:
        yield info, secret_dir
    finally:
        stop_sshd(info)


async def test_hidden_directories_are_not_visible_remotely(
    hidden_sshd: tuple[SshdInfo, Path], tmp_path: Path
) -> None:
    """The fixture's hide option makes a local directory empty for remote commands (and SFTP)."""
    info, secret_dir = hidden_sshd
    connector = _connector(info, tmp_path)
    try:
        assert await connector.run(NODE, ["ls", "-A", str(secret_dir)], capture_output=True) == ("", 0)
        assert await connector.run(NODE, ["sh", "-c", "echo $SF_REMOTE"], capture_output=True) == ("yes", 0)
        with pytest.raises(TransferError):
            await connector.copy_remote_to_local(str(secret_dir / "data.txt"), str(tmp_path / "x"), NODE)
        # What the remote side writes there stays remote; a transferred copy is what it sees.
        await connector.copy_local_to_remote(
            str(secret_dir / "data.txt"), str(secret_dir / "copy.txt"), [NODE]
        )
        assert await connector.run(NODE, ["cat", str(secret_dir / "copy.txt")], capture_output=True) == (
            "local",
            0,
        )
        assert sorted(os.listdir(secret_dir)) == ["data.txt"]
    finally:
        await connector.undeploy(external=False)
    stop_sshd(info)
    assert not _pid_alive(info.pid)


# --- passwords, against an asyncssh server in this process ----------------------------------------

_PASSWORD = "Corr3ct-horse-7d1e"


class _PasswordServer(asyncssh.SSHServer):
    """Accepts the user ``tester`` with ``_PASSWORD`` only."""

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return True

    def validate_password(self, username: str, password: str) -> bool:
        return username == "tester" and password == _PASSWORD


async def _run_locally(process: asyncssh.SSHServerProcess[bytes]) -> None:
    """Run the requested command with /bin/sh here (no input), as a real server would."""
    child = await asyncio.create_subprocess_shell(
        process.command or "true",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )

    async def pump(source: asyncio.StreamReader | None, sink: asyncssh.SSHWriter[bytes]) -> None:
        assert source is not None
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()

    await asyncio.gather(pump(child.stdout, process.stdout), pump(child.stderr, process.stderr))
    process.exit(await child.wait())


@pytest.fixture
async def password_server(tmp_path: Path) -> AsyncIterator[tuple[int, str]]:
    """An asyncssh server on 127.0.0.1 with password login; yields (port, known_hosts file)."""
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(
        _PasswordServer,
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        process_factory=_run_locally,
        encoding=None,
    )
    port = int(server.sockets[0].getsockname()[1])
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n")
    try:
        yield port, str(known_hosts)
    finally:
        server.close()
        await server.wait_closed()


async def test_password_login_and_secrecy(password_server: tuple[int, str], tmp_path: Path) -> None:
    """passwordFile logs in; a wrong password fails clearly, the value never in errors or logs."""
    port, known_hosts = password_server
    (tmp_path / "good").write_text(_PASSWORD + "\n")
    (tmp_path / "bad").write_text("wrong-" + _PASSWORD)
    base: dict[str, Any] = {
        "nodes": ["127.0.0.1"],
        "port": port,
        "username": "tester",
        "knownHostsFile": known_hosts,
    }
    with capture_logs() as logs:
        connector = SSHConnector("pw", str(tmp_path), **base, passwordFile="good", retries=0)
        await connector.deploy(external=False)
        try:
            assert await connector.run(NODE, ["echo", "in"], capture_output=True) == ("in", 0)
        finally:
            await connector.undeploy(external=False)
        bad = SSHConnector("pw", str(tmp_path), **base, passwordFile="bad", retries=1, retryDelay=0.05)
        with pytest.raises(DeploymentError) as info:
            await bad.deploy(external=False)
    assert "PermissionDenied" in str(info.value) and "passwordFile" in str(info.value)
    assert _PASSWORD not in str(info.value) and _PASSWORD not in repr(logs)
