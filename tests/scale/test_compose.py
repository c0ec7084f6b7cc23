"""``compose.yaml`` and the ``Dockerfile``: a consistent 3-node NATS cluster, two agents and a client."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[2]
NATS = ("nats1", "nats2", "nats3")
AGENTS = ("agent1", "agent2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml, parsed with YAML merge keys resolved."""
    data: dict[str, Any] = YAML(typ="safe").load((REPO / "compose.yaml").read_text())
    return data


def _nats_conf(compose: dict[str, Any]) -> str:
    content: str = compose["configs"]["nats-conf"]["content"]
    return content.replace("$$", "$")


def test_services_are_the_cluster_two_agents_and_a_client(compose: dict[str, Any]) -> None:
    """The services are three NATS nodes, two agents and a client."""
    assert set(compose["services"]) == {*NATS, *AGENTS, "client"}


def test_nats_nodes_form_a_jetstream_cluster(compose: dict[str, Any]) -> None:
    """Every node runs the official image with the shared config: JetStream, fsync always, routes to all nodes."""
    conf = _nats_conf(compose)
    assert "sync_interval: always" in conf
    assert "store_dir: /data" in conf
    routes = set(re.findall(r"nats-route://(\w+):6222", conf))
    assert routes == set(NATS)
    assert "token: $STREAMFLOW_NATS_TOKEN" in conf
    for name in NATS:
        service = compose["services"][name]
        assert service["image"].startswith("nats:")
        assert service["hostname"] == name
        assert service["environment"]["SERVER_NAME"] == name
        assert "STREAMFLOW_NATS_TOKEN" in service["environment"]
        target = service["configs"][0]["target"]
        assert service["command"] == ["--config", target]
        assert service["configs"][0]["source"] in compose["configs"]
        assert "healthcheck" in service


def test_each_node_has_its_own_store_volume(compose: dict[str, Any]) -> None:
    """Each node keeps its JetStream store in its own named volume at /data; every named volume is declared."""
    stores = [compose["services"][name]["volumes"][0] for name in NATS]
    assert len(set(stores)) == 3
    assert all(v.endswith(":/data") for v in stores)
    declared = set(compose["volumes"])
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, volume


def test_published_ports_are_unique_and_on_loopback(compose: dict[str, Any]) -> None:
    """Only nats1 publishes ports (client 4222, monitoring 8222), bound to the host's loopback."""
    published = {name: s.get("ports", []) for name, s in compose["services"].items() if s.get("ports")}
    assert set(published) == {"nats1"}
    host_ports = [p.split(":")[1] for p in published["nats1"]]
    assert sorted(host_ports) == ["4222", "8222"]
    assert all(p.startswith("127.0.0.1:") for p in published["nats1"])
    conf = _nats_conf(compose)
    assert "listen: 0.0.0.0:4222" in conf and "http: 0.0.0.0:8222" in conf


def test_streamflow_services_share_work_and_reach_every_node(compose: dict[str, Any]) -> None:
    """Agents and client use the built image, the whole cluster's URLs, the token, and the shared work volume."""
    for name in (*AGENTS, "client"):
        service = compose["services"][name]
        assert service["build"] == "."
        assert "work:/work" in service["volumes"]
        urls = service["environment"]["STREAMFLOW_NATS_URL"].split(",")
        assert [u.split("//")[1].split(":")[0] for u in urls] == list(NATS)
        assert all(u.endswith(":4222") for u in urls)
        assert "STREAMFLOW_NATS_TOKEN" in service["environment"]
        for node in NATS:
            assert service["depends_on"][node]["condition"] == "service_healthy"


def test_agents_drain_and_client_runs_wordcount_with_no_local_workers(compose: dict[str, Any]) -> None:
    """Agents run ``streamflow agent`` with SIGTERM drain time; the client runs wordcount with ``--workers 0``."""
    names = set()
    for name in AGENTS:
        service = compose["services"][name]
        command = service["command"]
        assert command[0] == "agent"
        names.add(command[command.index("--name") + 1])
        assert command[command.index("--workdir") + 1].startswith("/work/")
        assert service["stop_signal"] == "SIGTERM"
        assert service["stop_grace_period"]
    assert len(names) == 2
    client = compose["services"]["client"]
    command = client["command"]
    assert command[0] == "run"
    assert command[command.index("--workers") + 1] == "0"
    assert command[command.index("--workdir") + 1].startswith("/work/")
    assert set(client["depends_on"]) == {*NATS, *AGENTS}
    for path in command[1:3]:
        relative = Path(path).relative_to("/app")
        assert (REPO / relative).is_file(), path


def test_dependencies_name_existing_services(compose: dict[str, Any]) -> None:
    """Every ``depends_on`` names a defined service, and the dependency graph has no cycle."""
    services = compose["services"]
    for service in services.values():
        assert set(service.get("depends_on", {})) <= set(services)
    visiting: set[str] = set()
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"cycle through {name}"
        if name in done:
            return
        visiting.add(name)
        for dep in services[name].get("depends_on", {}):
            visit(dep)
        visiting.discard(name)
        done.add(name)

    for name in services:
        visit(name)


def test_dockerfile_installs_the_cli_with_the_examples() -> None:
    """The image installs the package, Node.js for CWL expressions, the examples at /app, and runs ``streamflow``."""
    text = (REPO / "Dockerfile").read_text()
    assert "pip install" in text and "nodejs" in text
    assert re.search(r"^WORKDIR /app$", text, re.M)
    assert re.search(r"^COPY examples ", text, re.M)
    assert 'ENTRYPOINT ["streamflow"]' in text
    assert re.search(r"^USER ", text, re.M)
    for source in re.findall(r"^COPY (\S+)", text, re.M):
        assert (REPO / source).exists(), source


def test_docker_compose_accepts_the_file(tmp_path: Path) -> None:
    """``docker compose config`` validates compose.yaml (needs the compose plugin)."""
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("docker is not installed")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not available")
    result = subprocess.run([docker, "compose", "-f", str(REPO / "compose.yaml"), "config", "--quiet"],
                            capture_output=True, text=True, check=False, cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin", "STREAMFLOW_NATS_TOKEN": "t"})
    assert result.returncode == 0, result.stderr


def test_nats_config_is_valid_for_the_server(tmp_path: Path, compose: dict[str, Any]) -> None:
    """The shared NATS config passes ``nats-server -t`` with SERVER_NAME and the token taken from the environment."""
    from streamflow.bus import find_server_binary

    conf = tmp_path / "nats.conf"
    conf.write_text(_nats_conf(compose).replace("store_dir: /data", f"store_dir: {tmp_path / 'data'}"))
    env = {"SERVER_NAME": "nats1", "STREAMFLOW_NATS_TOKEN": "t0ken"}
    ok = subprocess.run([find_server_binary(), "-c", str(conf), "-t"], env=env, capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run([find_server_binary(), "-c", str(conf), "-t"], env={"SERVER_NAME": "nats1"},
                             capture_output=True, text=True, check=False)
    assert missing.returncode != 0 and "STREAMFLOW_NATS_TOKEN" in missing.stderr
