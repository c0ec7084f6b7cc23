"""The ``kubernetes`` and ``helm`` connectors: the containers of pods, reached with ``kubectl``.

Both drive the documented CLIs (``kubectl apply/get/exec/delete/rollout``, ``helm
install/uninstall``) as argument lists. A location is a running pod; its StreamFlow service is the
container (``kubectl exec -c``). Copies are tar streams through ``kubectl exec -i`` (what
``kubectl cp`` does), so images need ``sh`` and ``tar``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from streamflow.connectors._container import ContainerConnector
from streamflow.core.deployment import ExecutionLocation
from streamflow.errors import ConfigError, DeploymentError

__all__ = ["HelmConnector", "KubernetesConnector"]

_ROLLOUT_KINDS = ("deployment", "statefulset", "daemonset")


def _cluster_schema() -> dict[str, Any]:
    return {
        "namespace": {"type": "string", "description": "The namespace; default the kubeconfig context's"},
        "kubeconfig": {
            "type": "string",
            "description": "The kubeconfig file (relative to the directory of streamflow.yml); "
            "default `KUBECONFIG`, then `~/.kube/config`",
        },
        "kubeContext": {"type": "string", "description": "The kubeconfig context to use"},
        "inCluster": {
            "type": "boolean",
            "default": False,
            "description": "Use the pod's service account (StreamFlow runs inside the cluster); "
            "`kubeconfig` is then ignored",
        },
        "labelSelector": {
            "type": "string",
            "description": "Only pods matching this label selector are locations (`kubectl get -l`)",
        },
        "maxConcurrentConnections": {
            "type": "integer",
            "minimum": 1,
            "default": 4096,
            "description": "At most this many `kubectl`/`helm` processes at once",
        },
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "default": 600,
            "description": "Seconds deploying (rollouts, `helm --wait`) may take",
        },
        "transferBufferSize": {
            "type": "integer",
            "minimum": 1,
            "default": 2**16,
            "description": "Bytes per chunk for copies streamed through this process",
        },
    }


class KubernetesConnector(ContainerConnector):
    """Applies manifests with ``kubectl`` and runs commands in their pods with ``kubectl exec``.

    ``deploy`` applies ``files`` (unless ``external``) and waits for the rollouts of the
    deployments, stateful sets and daemon sets they create; ``undeploy`` deletes what was
    applied. Locations are the running pods of the namespace (matching ``labelSelector``);
    asked without a service, each pod is offered through its first container.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        files: manifest files (relative to ``config_dir``).
        namespace: the namespace.
        kubeconfig: the kubeconfig file.
        kubeContext: the kubeconfig context.
        inCluster: use the pod's service account.
        labelSelector: the label selector of the pods to use.
        maxConcurrentConnections: at most this many client processes at once.
        timeout: seconds deploying may take.
        transferBufferSize: bytes per chunk for streamed copies.
    """

    client_name = "kubectl"

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        files: Sequence[str] | None = None,
        namespace: str | None = None,
        kubeconfig: str | None = None,
        kubeContext: str | None = None,
        inCluster: bool = False,
        labelSelector: str | None = None,
        maxConcurrentConnections: int = 4096,
        timeout: float = 600,
        transferBufferSize: int = 2**16,
    ) -> None:
        super().__init__(deployment_name, config_dir, transferBufferSize)
        if maxConcurrentConnections < 1:
            raise ConfigError(f"deployment {deployment_name!r}: maxConcurrentConnections must be at least 1")
        self.files = [os.path.normpath(os.path.join(config_dir, f)) for f in files or []]
        self.namespace = namespace
        self.kubeconfig = (
            None if inCluster or not kubeconfig else os.path.normpath(os.path.join(config_dir, kubeconfig))
        )
        self.kube_context = kubeContext
        self.in_cluster = inCluster
        self.label_selector = labelSelector
        self.timeout = timeout
        self._semaphore = asyncio.Semaphore(maxConcurrentConnections)
        self._applied: list[str] = []

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``kubernetes`` deployment's ``config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://streamflow.di.unito.it/schemas/deployment/connector/kubernetes.json",
            "type": "object",
            "properties": {
                "files": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Manifest files to apply (relative to the directory of streamflow.yml)",
                },
                **_cluster_schema(),
            },
            "additionalProperties": False,
        }

    def client_env(self) -> dict[str, str] | None:
        """This process's environment (without ``KUBECONFIG`` when ``inCluster``)."""
        if self.in_cluster:
            return {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        return None

    def kubectl_argv(self, *args: str, namespaced: bool = True) -> list[str]:
        """``kubectl [--kubeconfig F] [--context C] [-n NS] ARGS...``."""
        argv = ["kubectl"]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.kube_context:
            argv += ["--context", self.kube_context]
        if namespaced and self.namespace:
            argv += ["--namespace", self.namespace]
        return [*argv, *args]

    def exec_argv(
        self,
        location: ExecutionLocation,
        command: Sequence[str],
        *,
        interactive: bool = False,
        workdir: str | None = None,
        environment: Mapping[str, str] | None = None,
    ) -> list[str]:
        """``kubectl exec [-i] POD [-c CONTAINER] -- [sh -c 'cd WORKDIR...'] [env K=V...] COMMAND...``.

        ``kubectl exec`` has no working directory nor environment options: a ``cd`` (whose
        failure exits 126 with the message on the client's standard error) and ``env`` do it.
        """
        argv = self.kubectl_argv("exec")
        if interactive:
            argv.append("-i")
        argv.append(location.name)
        if location.service:
            argv += ["-c", location.service]
        argv.append("--")
        if workdir:
            argv += ["sh", "-c", 'cd -- "$1" || exit 126; shift; exec "$@"', "sh", workdir]
        if environment:
            argv += ["env", *(f"{k}={v}" for k, v in environment.items())]
        return [*argv, *command]

    async def _check_cluster(self) -> None:
        result = await self.client(
            self.kubectl_argv("version", "-o", "json", "--request-timeout=15s"), timeout=60
        )
        if result.returncode != 0 or b'"serverVersion"' not in result.stdout:
            raise DeploymentError(
                f"deployment {self.deployment_name!r}: no Kubernetes cluster answers: {result.error}",
                retryable=False,
            )

    async def deploy(self, external: bool) -> None:
        """Apply the manifests and wait for their rollouts (or, if ``external``, only connect).

        Raises:
            DeploymentError: if ``kubectl`` is missing, no cluster answers, or a rollout fails.
        """
        await self._check_cluster()
        if external:
            return
        for path in self.files:
            if not os.path.isfile(path):
                raise ConfigError(f"deployment {self.deployment_name!r}: manifest not found: {path}")
            result = await self.checked(self.kubectl_argv("apply", "-f", path, "-o", "name"), f"apply {path}")
            self._applied.append(path)
            for obj in result.stdout.decode().split():
                if obj.split("/")[0].split(".")[0] in _ROLLOUT_KINDS:
                    await self.checked(
                        self.kubectl_argv("rollout", "status", obj, f"--timeout={int(self.timeout)}s"),
                        f"roll out {obj}",
                        timeout=self.timeout + 30,
                    )

    async def undeploy(self, external: bool) -> None:
        """Delete what :meth:`deploy` applied (never anything else). Idempotent."""
        applied, self._applied = self._applied, []
        for path in reversed(applied):
            await self.checked(
                self.kubectl_argv(
                    "delete", "-f", path, "--ignore-not-found", f"--timeout={int(self.timeout)}s"
                ),
                f"delete {path}",
                timeout=self.timeout + 30,
            )
        self._hardware.clear()

    async def locations(self, service: str | None = None) -> dict[str, ExecutionLocation]:
        """The running pods (their container ``service``, or their first container), by pod name."""
        args = ["get", "pods", "-o", "json"]
        if self.label_selector:
            args += ["-l", self.label_selector]
        result = await self.checked(self.kubectl_argv(*args), "list pods")
        result_map: dict[str, ExecutionLocation] = {}
        for pod in json.loads(result.stdout or b"{}").get("items", []):
            name = pod.get("metadata", {}).get("name")
            status = pod.get("status", {})
            if (
                not name
                or status.get("phase") != "Running"
                or pod.get("metadata", {}).get("deletionTimestamp")
            ):
                continue
            running = {
                c.get("name")
                for c in status.get("containerStatuses", [])
                if "running" in (c.get("state") or {})
            }
            containers = [c.get("name") for c in pod.get("spec", {}).get("containers", [])]
            chosen = service if service is not None else (containers[0] if containers else None)
            if chosen in running:
                result_map[name] = ExecutionLocation(
                    name=name, deployment=self.deployment_name, service=chosen, hostname=status.get("podIP")
                )
        return dict(sorted(result_map.items()))


class HelmConnector(KubernetesConnector):
    """Installs a Helm chart as a release and uses its pods (see :class:`KubernetesConnector`).

    ``deploy`` runs ``helm install --wait`` (unless ``external``: the release must exist),
    ``undeploy`` ``helm uninstall`` of the release it installed. Locations are the running pods
    labelled ``app.kubernetes.io/instance=<releaseName>`` unless ``labelSelector`` says otherwise.

    Args:
        deployment_name: the deployment this connector serves.
        config_dir: the directory of ``streamflow.yml``.
        chart: the chart (a reference, a path relative to ``config_dir``, or a URL).
        releaseName: the release name; default ``streamflow-<deployment>``.
        chartVersion: the chart version.
        repo: the chart repository URL.
        values: values files (relative to ``config_dir``).
        set: values set on the command line (``--set KEY=VALUE``).
        createNamespace: create the namespace if missing.
        **kwargs: the options of :class:`KubernetesConnector` but ``files``.
    """

    client_name = "helm"

    def __init__(
        self,
        deployment_name: str,
        config_dir: str,
        chart: str,
        releaseName: str | None = None,
        chartVersion: str | None = None,
        repo: str | None = None,
        values: Sequence[str] | None = None,
        set: Mapping[str, Any] | None = None,
        createNamespace: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(deployment_name, config_dir, **kwargs)
        local = os.path.exists(os.path.join(config_dir, chart)) and not os.path.isabs(chart)
        self.chart = os.path.normpath(os.path.join(config_dir, chart)) if local else chart
        safe = "".join(c if c.isalnum() or c == "-" else "-" for c in deployment_name.lower())
        self.release = releaseName or f"streamflow-{safe}"
        self.chart_version = chartVersion
        self.repo = repo
        self.values = [os.path.normpath(os.path.join(config_dir, v)) for v in values or []]
        self.set_values = {str(k): str(v) for k, v in (set or {}).items()}
        self.create_namespace = createNamespace
        self.label_selector = self.label_selector or f"app.kubernetes.io/instance={self.release}"
        self._installed = False

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of a ``helm`` deployment's ``config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://streamflow.di.unito.it/schemas/deployment/connector/helm.json",
            "type": "object",
            "properties": {
                "chart": {
                    "type": "string",
                    "description": "The chart: a reference (`repo/name`), a path relative to the directory "
                    "of streamflow.yml, or a URL",
                },
                "releaseName": {
                    "type": "string",
                    "description": "The release name; default `streamflow-<deployment>`",
                },
                "chartVersion": {"type": "string", "description": "The chart version (`helm --version`)"},
                "repo": {"type": "string", "description": "The chart repository URL (`helm --repo`)"},
                "values": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "Values files (`helm -f`), relative to the directory of streamflow.yml",
                },
                "set": {
                    "type": "object",
                    "additionalProperties": {"type": ["string", "number", "boolean"]},
                    "description": "Values set on the command line (`helm --set KEY=VALUE`)",
                },
                "createNamespace": {
                    "type": "boolean",
                    "default": False,
                    "description": "Create the namespace if missing (`helm --create-namespace`)",
                },
                **_cluster_schema(),
            },
            "required": ["chart"],
            "additionalProperties": False,
        }

    def helm_argv(self, *args: str) -> list[str]:
        """``helm [--kubeconfig F] [--kube-context C] [--namespace NS] ARGS...``."""
        argv = ["helm"]
        if self.kubeconfig:
            argv += ["--kubeconfig", self.kubeconfig]
        if self.kube_context:
            argv += ["--kube-context", self.kube_context]
        if self.namespace:
            argv += ["--namespace", self.namespace]
        return [*argv, *args]

    def install_argv(self) -> list[str]:
        """``helm install RELEASE CHART --wait --timeout Ns [options]``."""
        argv = self.helm_argv(
            "install", self.release, self.chart, "--wait", f"--timeout={int(self.timeout)}s"
        )
        if self.chart_version:
            argv += ["--version", self.chart_version]
        if self.repo:
            argv += ["--repo", self.repo]
        if self.create_namespace:
            argv.append("--create-namespace")
        for path in self.values:
            argv += ["-f", path]
        for key, value in self.set_values.items():
            argv += ["--set", f"{key}={value}"]
        return argv

    async def deploy(self, external: bool) -> None:
        """Install the release and wait for it (or, if ``external``, check that it exists).

        Raises:
            DeploymentError: if ``kubectl``/``helm`` is missing, no cluster answers, or the
                install fails.
        """
        await self._check_cluster()
        if external:
            await self.checked(self.helm_argv("status", self.release), f"find release {self.release!r}")
            return
        await self.checked(
            self.install_argv(), f"install {self.chart} as {self.release!r}", timeout=self.timeout + 60
        )
        self._installed = True

    async def undeploy(self, external: bool) -> None:
        """Uninstall the release :meth:`deploy` installed (never an external one). Idempotent."""
        if self._installed:
            self._installed = False
            await self.checked(
                self.helm_argv("uninstall", self.release, "--wait", f"--timeout={int(self.timeout)}s"),
                f"uninstall {self.release!r}",
                timeout=self.timeout + 60,
            )
        self._hardware.clear()
