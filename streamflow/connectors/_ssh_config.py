"""Configuration of the ``ssh`` connector: its JSON Schema and the resolved per-node settings."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamflow.errors import ConfigError

__all__ = ["NODE_KEYS", "SSHNode", "read_secret", "resolve_nodes", "ssh_schema"]

_NODE_PROPERTIES: dict[str, Any] = {
    "hostname": {"type": "string", "minLength": 1, "description": "Host name or address of the node"},
    "port": {
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
        "description": "SSH port of the node; overrides the deployment's port",
    },
    "username": {
        "type": "string",
        "minLength": 1,
        "description": "User to log in as on the node; overrides the deployment's username",
    },
    "sshKey": {
        "type": "string",
        "minLength": 1,
        "description": "Private key file for the node (relative to the streamflow.yml directory); overrides the deployment's sshKey",
    },
    "sshKeyPassphraseFile": {
        "type": "string",
        "minLength": 1,
        "description": "File holding the passphrase of the node's sshKey; overrides the deployment's",
    },
    "passwordFile": {
        "type": "string",
        "minLength": 1,
        "description": "File holding the login password for the node; overrides the deployment's",
    },
}

NODE_KEYS = frozenset(_NODE_PROPERTIES)
"""The keys a node object of ``nodes`` may have."""


def ssh_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of an ``ssh`` deployment's ``config``."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://streamflow.di.unito.it/schemas/deployment/connector/ssh.json",
        "type": "object",
        "properties": {
            "nodes": {
                "type": "array",
                "minItems": 1,
                "description": "The nodes of the deployment, one location each, named by host name: "
                "host names, or objects with a hostname and per-node settings",
                "items": {
                    "oneOf": [
                        {"type": "string", "minLength": 1, "description": "Host name or address"},
                        {
                            "type": "object",
                            "description": "A node with its own settings",
                            "properties": _NODE_PROPERTIES,
                            "required": ["hostname"],
                            "additionalProperties": False,
                        },
                    ]
                },
            },
            "username": {
                "type": "string",
                "minLength": 1,
                "description": "User to log in as (default: the user running StreamFlow)",
            },
            "sshKey": {
                "type": "string",
                "minLength": 1,
                "description": "Private key file to authenticate with, relative to the streamflow.yml "
                "directory (default: the SSH agent and the keys in ~/.ssh)",
            },
            "sshKeyPassphraseFile": {
                "type": "string",
                "minLength": 1,
                "description": "File holding the passphrase of sshKey (its value is never logged)",
            },
            "passwordFile": {
                "type": "string",
                "minLength": 1,
                "description": "File holding the login password (its value is never logged)",
            },
            "port": {
                "type": "integer",
                "minimum": 1,
                "maximum": 65535,
                "default": 22,
                "description": "SSH port of the nodes",
            },
            "maxConnections": {
                "type": "integer",
                "minimum": 1,
                "default": 1,
                "description": "Maximum number of SSH connections opened to each node",
            },
            "maxConcurrentSessions": {
                "type": "integer",
                "minimum": 1,
                "default": 10,
                "description": "Maximum number of sessions (commands, transfers) multiplexed on one "
                "connection; keep it at most the server's MaxSessions (OpenSSH: 10)",
            },
            "retries": {
                "type": "integer",
                "minimum": 0,
                "default": 3,
                "description": "How many more times to try connecting to a node after a failure",
            },
            "retryDelay": {
                "type": "number",
                "minimum": 0,
                "default": 5,
                "description": "Seconds to wait between connection attempts",
            },
            "connectTimeout": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 30,
                "description": "Seconds allowed to open a connection and log in",
            },
            "checkHostKey": {
                "type": "boolean",
                "default": True,
                "description": "Check the nodes' host keys against knownHostsFile; false disables "
                "the check (insecure: a warning is logged)",
            },
            "knownHostsFile": {
                "type": "string",
                "minLength": 1,
                "default": "~/.ssh/known_hosts",
                "description": "The known_hosts file host keys are checked against, relative to the "
                "streamflow.yml directory",
            },
            "transferBufferSize": {
                "type": "integer",
                "minimum": 1,
                "default": 2**16,
                "description": "Bytes per chunk for streamed copies",
            },
        },
        "required": ["nodes"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class SSHNode:
    """The resolved settings of one node (paths absolute).

    Attributes:
        hostname: the host name, also the location name.
        port: the SSH port.
        username: the login user, or ``None`` for the local user.
        ssh_key: the private key file, if any.
        passphrase_file: the file holding the key passphrase, if any.
        password_file: the file holding the password, if any.
    """

    hostname: str
    port: int
    username: str | None
    ssh_key: str | None
    passphrase_file: str | None
    password_file: str | None


def _path(config_dir: str, path: str | None) -> str | None:
    if path is None:
        return None
    return os.path.normpath(os.path.join(config_dir, os.path.expanduser(path)))


def resolve_nodes(
    deployment: str,
    config_dir: str,
    nodes: Sequence[str | dict[str, Any]],
    defaults: dict[str, Any],
) -> list[SSHNode]:
    """Resolve ``nodes`` against the deployment-wide ``defaults`` (camelCase keys).

    Raises:
        ConfigError: if a node is malformed or two nodes share a host name.
    """
    if not nodes:
        raise ConfigError(f"deployment {deployment!r}: ssh config field 'nodes' must list at least one node")
    resolved: list[SSHNode] = []
    for index, node in enumerate(nodes):
        spec: dict[str, Any] = {"hostname": node} if isinstance(node, str) else dict(node)
        unknown = set(spec) - NODE_KEYS
        hostname = spec.get("hostname")
        if unknown or not isinstance(hostname, str) or not hostname:
            raise ConfigError(
                f"deployment {deployment!r}: ssh config field 'nodes[{index}]' needs a 'hostname'"
                + (f" and has unknown keys {sorted(unknown)}" if unknown else "")
            )
        settings = {**defaults, **{k: v for k, v in spec.items() if v is not None}}
        port = settings.get("port", 22)
        if not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError(f"deployment {deployment!r}: ssh config field 'nodes[{index}].port' is invalid")
        resolved.append(
            SSHNode(
                hostname=hostname,
                port=port,
                username=settings.get("username"),
                ssh_key=_path(config_dir, settings.get("sshKey")),
                passphrase_file=_path(config_dir, settings.get("sshKeyPassphraseFile")),
                password_file=_path(config_dir, settings.get("passwordFile")),
            )
        )
    names = [node.hostname for node in resolved]
    if duplicates := sorted({name for name in names if names.count(name) > 1}):
        raise ConfigError(
            f"deployment {deployment!r}: ssh config field 'nodes' lists {duplicates} more than once "
            "(locations are named by host name)"
        )
    return resolved


def read_secret(deployment: str, field: str, path: str) -> str:
    """Return the secret held in the file ``path`` (without its trailing newline).

    The value never appears in messages; only the field and the file name do.

    Raises:
        ConfigError: if the file cannot be read.
    """
    try:
        with open(path, encoding="utf-8") as file:
            return file.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(
            f"deployment {deployment!r}: ssh config field {field!r}: cannot read {path}: {exc.strerror}"
        ) from exc
