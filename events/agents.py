"""Agents announce themselves: which deployment they serve, from where, with what capacity.

Each ``streamflow agent`` keeps one key of the KV bucket ``sf_agents`` per deployment it
serves (``<deployment>.<agent id>``), rewritten every :data:`ANNOUNCE_EVERY` seconds and
deleted when it leaves; the bucket's ``max_age`` drops the key of an agent that died. A run
reads the bucket (:func:`list_agents`) and records the agents of the deployments it uses as
locations in its ``DeploymentDeployed`` events, so the Scheduler sizes a deployment from the
agents that serve it rather than from the submitting machine.

The submitter creates the bucket (:func:`agents_bucket` with ``create=True``); an agent only
writes its own keys, and an agent without the right to do so still runs jobs (its
announcement is skipped with a warning).
"""

from __future__ import annotations

import re

import msgspec
import nats.js.errors
from nats.js import JetStreamContext, api
from nats.js.kv import KeyValue

__all__ = ["AGENTS_BUCKET", "ANNOUNCE_EVERY", "AgentInfo", "agent_key", "agents_bucket", "list_agents"]

AGENTS_BUCKET = "sf_agents"
ANNOUNCE_EVERY = 5.0
"""Seconds between two announcements of an agent."""
_MAX_AGE = 3 * ANNOUNCE_EVERY


class AgentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What an agent announces for one deployment it serves.

    Attributes:
        deployment: the deployment whose tasks it pulls.
        name: the agent's id (``host/pid`` by default).
        hostname: the machine it runs on.
        cores: cores of that machine.
        memory: memory of that machine, MiB.
        workers: how many jobs it runs at once.
        shared_fs: whether it shares the submitters' filesystem.
    """

    deployment: str
    name: str
    hostname: str
    cores: float
    memory: float = 0.0
    workers: int = 1
    shared_fs: bool = True


def agent_key(deployment: str, name: str) -> str:
    """The KV key of an agent's announcement (subject-safe)."""
    return f"{deployment}.{re.sub(r'[^A-Za-z0-9_-]', '_', name)}"


async def agents_bucket(js: JetStreamContext, *, create: bool = False, replicas: int = 1) -> KeyValue | None:
    """The announcements bucket (created when ``create``); None if it does not exist."""
    try:
        return await js.key_value(AGENTS_BUCKET)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.NotFoundError):
        if not create:
            return None
        return await js.create_key_value(api.KeyValueConfig(bucket=AGENTS_BUCKET, history=1, ttl=_MAX_AGE,
                                                            replicas=max(1, replicas)))


async def list_agents(js: JetStreamContext) -> list[AgentInfo]:
    """Every live agent's announcements, ordered by deployment then name."""
    bucket = await agents_bucket(js)
    if bucket is None:
        return []
    try:
        keys = await bucket.keys()
    except nats.js.errors.NoKeysError:
        return []
    found: list[AgentInfo] = []
    for key in keys:
        try:
            entry = await bucket.get(key)
        except nats.js.errors.KeyNotFoundError:
            continue  # it left meanwhile
        if entry.value:
            try:
                found.append(msgspec.json.decode(entry.value, type=AgentInfo))
            except msgspec.ValidationError:
                continue  # not ours to interpret
    return sorted(found, key=lambda info: (info.deployment, info.name))
