"""The built-in plugin: StreamFlow's own implementations, registered by name."""

from __future__ import annotations

from streamflow.plugins._registry import StreamFlowPlugin

__all__ = ["BuiltinPlugin"]


class BuiltinPlugin(StreamFlowPlugin):
    """Registers the implementations shipped with StreamFlow.

    Names: connectors ``local`` and ``ssh``; policy ``data_locality``; deployment manager ``default``;
    failure managers ``default`` and ``retry`` (the same class) and ``dummy``; checkpoint
    managers ``default`` and ``dummy``.
    """

    def register(self) -> None:
        """Register the built-in classes (imported here, so that importing the registry is cheap)."""
        from streamflow.connectors.docker import DockerConnector
        from streamflow.connectors.docker_compose import DockerComposeConnector
        from streamflow.connectors.flux import FluxConnector
        from streamflow.connectors.kubernetes import HelmConnector, KubernetesConnector
        from streamflow.connectors.local import LocalConnector
        from streamflow.connectors.pbs import PBSConnector
        from streamflow.connectors.singularity import SingularityConnector
        from streamflow.connectors.slurm import SlurmConnector
        from streamflow.connectors.ssh import SSHConnector
        from streamflow.deployment.manager import DefaultDeploymentManager
        from streamflow.recovery.checkpoint import DefaultCheckpointManager, DummyCheckpointManager
        from streamflow.recovery.failure import DummyFailureManager, RetryFailureManager
        from streamflow.scheduling.filters import ShuffleBindingFilter
        from streamflow.scheduling.policy import DataLocalityPolicy

        self.register_connector("local", LocalConnector)
        self.register_connector("slurm", SlurmConnector)
        self.register_connector("pbs", PBSConnector)
        self.register_connector("flux", FluxConnector)
        self.register_connector("ssh", SSHConnector)
        self.register_connector("docker", DockerConnector)
        self.register_connector("docker-compose", DockerComposeConnector)
        self.register_connector("kubernetes", KubernetesConnector)
        self.register_connector("helm", HelmConnector)
        self.register_connector("singularity", SingularityConnector)
        self.register_connector("apptainer", SingularityConnector)
        self.register_policy("data_locality", DataLocalityPolicy)
        self.register_binding_filter("shuffle", ShuffleBindingFilter)
        self.register_deployment_manager("default", DefaultDeploymentManager)
        self.register_failure_manager("default", RetryFailureManager)
        self.register_failure_manager("retry", RetryFailureManager)
        self.register_failure_manager("dummy", DummyFailureManager)
        self.register_checkpoint_manager("default", DefaultCheckpointManager)
        self.register_checkpoint_manager("dummy", DummyCheckpointManager)
