"""Tests of the ``kubernetes`` and ``helm`` connectors.

No cluster can run on the CI machines (no Kubernetes distribution is packaged), so what is
checked everywhere is what needs no cluster: the schemas, the argv given to ``kubectl``/``helm``,
and clear deployment errors when ``kubectl`` is missing or no cluster answers. The tests against
a real cluster run where ``kubectl cluster-info`` answers (the current kubeconfig) and skip with
that reason elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import jsonschema
import pytest

from streamflow.connectors.kubernetes import HelmConnector, KubernetesConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.core.exception import CommandTimeoutError
from streamflow.errors import DeploymentError
from streamflow.plugins import Registry


def _cluster_answers() -> str | None:
    """Why no real-cluster test can run here, or ``None`` when ``kubectl cluster-info`` answers."""
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    try:
        result = subprocess.run(
            ["kubectl", "cluster-info", "--request-timeout=5s"], capture_output=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "kubectl cluster-info did not answer within 20 s"
    if result.returncode != 0:
        return "no Kubernetes cluster answers `kubectl cluster-info` (none can run on this machine)"
    return None


_NO_CLUSTER = _cluster_answers()
needs_cluster = pytest.mark.skipif(_NO_CLUSTER is not None, reason=str(_NO_CLUSTER))


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _kubeconfig(path: Path) -> Path:
    """A kubeconfig whose only cluster is a closed port on loopback."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: nowhere\n"
        f"clusters: [{{name: nowhere, cluster: {{server: 'https://127.0.0.1:{_closed_port()}'}}}}]\n"
        "users: [{name: u, user: {token: not-a-secret}}]\n"
        "contexts: [{name: nowhere, context: {cluster: nowhere, user: u}}]\n"
    )
    return path


def test_schemas_are_valid_and_registered() -> None:
    """Both schemas are valid draft 2020-12 with descriptions; both types are registered."""
    registry = Registry.default()
    for name, cls, good, bad in (
        (
            "kubernetes",
            KubernetesConnector,
            {"files": ["m.yml"], "namespace": "ns", "inCluster": True},
            {"file": []},
        ),
        ("helm", HelmConnector, {"chart": "c", "releaseName": "r", "set": {"a": 1}}, {"releaseName": "r"}),
    ):
        assert registry.get("connector", name) is cls
        schema = cls.get_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        assert all("description" in p for p in schema["properties"].values())
        validator = jsonschema.Draft202012Validator(schema)
        assert validator.is_valid(good) and not validator.is_valid(bad)
    assert not jsonschema.Draft202012Validator(KubernetesConnector.get_schema()).is_valid(
        {"maxConcurrentConnections": 0}
    )


def test_kubectl_and_helm_argv(tmp_path: Path) -> None:
    """Paths resolve against config_dir; exec wraps workdir and environment; helm gets every option."""
    connector = KubernetesConnector(
        "k", str(tmp_path), files=["m.yml"], namespace="ns", kubeconfig="kc", kubeContext="ctx"
    )
    assert connector.files == [str(tmp_path / "m.yml")]
    prefix = ["kubectl", "--kubeconfig", str(tmp_path / "kc"), "--context", "ctx", "--namespace", "ns"]
    assert connector.kubectl_argv("get", "pods") == [*prefix, "get", "pods"]
    location = ExecutionLocation("pod-1", "k", service="main")
    assert connector.exec_argv(location, ["echo", "a b"], interactive=True, workdir="/w", environment={"K": "v"}) == [
        *prefix, "exec", "-i", "pod-1", "-c", "main", "--",
        "sh", "-c", 'cd -- "$1" || exit 126; shift; exec "$@"', "sh", "/w",
        "env", "K=v", "echo", "a b",
    ]  # fmt: skip
    in_cluster = KubernetesConnector("k", str(tmp_path), kubeconfig="kc", inCluster=True)
    assert in_cluster.kubectl_argv("get", "pods") == ["kubectl", "get", "pods"]
    assert "KUBECONFIG" not in (in_cluster.client_env() or {})

    (tmp_path / "chart").mkdir()
    helm = HelmConnector(
        "h", str(tmp_path), chart="chart", namespace="ns", values=["v.yml"], set={"replicas": 2},
        chartVersion="1.2.3", createNamespace=True, timeout=60,
    )  # fmt: skip
    assert helm.install_argv() == [
        "helm", "--namespace", "ns", "install", "streamflow-h", str(tmp_path / "chart"), "--wait", "--timeout=60s",
        "--version", "1.2.3", "--create-namespace", "-f", str(tmp_path / "v.yml"), "--set", "replicas=2",
    ]  # fmt: skip
    assert helm.label_selector == "app.kubernetes.io/instance=streamflow-h"
    assert HelmConnector("h", str(tmp_path), chart="repo/name").chart == "repo/name"


async def test_missing_kubectl_is_a_deployment_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without kubectl on PATH, deploy says so."""
    monkeypatch.setenv("PATH", str(tmp_path))
    for connector in (KubernetesConnector("k", str(tmp_path)), HelmConnector("h", str(tmp_path), chart="c")):
        with pytest.raises(DeploymentError, match="'kubectl' is not installed"):
            await connector.deploy(external=False)


async def test_unreachable_cluster_is_a_deployment_error(tmp_path: Path) -> None:
    """With kubectl but no cluster at the kubeconfig's address, deploy fails clearly (no secret shown)."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    connector = KubernetesConnector("k", str(tmp_path), kubeconfig=str(_kubeconfig(tmp_path / "kc")))
    with pytest.raises(DeploymentError, match="'k': no Kubernetes cluster answers") as info:
        await connector.deploy(external=True)
    assert "not-a-secret" not in str(info.value)
    await connector.undeploy(external=True)  # nothing was applied: nothing to delete


# --- against a real cluster (skipped where none answers) ------------------------------------------

_MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
        - name: main
          image: {image}
          command: [sleep, infinity]
"""


@pytest.fixture
async def cluster_deployment(tmp_path: Path) -> AsyncIterator[KubernetesConnector]:
    """A two-replica busybox Deployment applied in the current kubeconfig's cluster."""
    name = f"sf-test-{uuid.uuid4().hex[:8]}"
    (tmp_path / "m.yml").write_text(
        _MANIFEST.format(name=name, image=os.environ.get("SF_TEST_K8S_IMAGE", "busybox:1.36"))
    )
    connector = KubernetesConnector(
        "k8s", str(tmp_path), files=["m.yml"], labelSelector=f"app={name}", timeout=300
    )
    await connector.deploy(external=False)
    try:
        yield connector
    finally:
        await connector.undeploy(external=False)


@needs_cluster
@pytest.mark.slow
async def test_cluster_run_copy_timeout(cluster_deployment: KubernetesConnector, tmp_path: Path) -> None:
    """Pods are locations; run, copies both ways and pod to pod, and timeouts work."""
    connector = cluster_deployment
    available = await connector.get_available_locations("main")
    assert len(available) == 2
    first, second = (available[name].location for name in sorted(available))
    assert await connector.run(
        first,
        ["sh", "-c", 'echo "$PWD $X"; exit 3'],
        environment={"X": "y"},
        workdir="/tmp",
        capture_output=True,
    ) == ("/tmp y", 3)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f.sh").write_text("#!/bin/sh\necho hi\n")
    (tmp_path / "d" / "f.sh").chmod(0o755)
    await connector.copy_local_to_remote(str(tmp_path / "d"), "/tmp/in/d", [first])
    await connector.copy_remote_to_remote("/tmp/in/d", "/tmp/rr", [second], first, connector)
    assert await connector.run(second, ["/tmp/rr/f.sh"], capture_output=True) == ("hi", 0)
    await connector.copy_remote_to_local("/tmp/rr", str(tmp_path / "back"), second)
    assert (tmp_path / "back" / "f.sh").read_text() == "#!/bin/sh\necho hi\n"
    with pytest.raises(CommandTimeoutError):
        await connector.run(first, ["sh", "-c", "sleep 301 & sleep 302"], timeout=2)
    output, _ = await connector.run(first, ["ps"], capture_output=True)  # type: ignore[misc]
    assert "sleep 30" not in output
