"""Tests of the retry policy and the built-in failure and checkpoint managers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from streamflow.core.data import DataLocation
from streamflow.core.deployment import LOCAL_DEPLOYMENT, ExecutionLocation
from streamflow.core.recovery import RetryPolicy, is_retryable
from streamflow.core.workflow import Job
from streamflow.errors import (
    ConfigError,
    FailureHandlingError,
    JobFailedError,
    RemoteCommandError,
    TransferError,
)
from streamflow.recovery import DefaultCheckpointManager, DummyFailureManager, RetryFailureManager


class _Context:
    """The attributes of a StreamFlowContext the managers use."""

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.config = config or {}
        self.data_manager = _RecordingDataManager()


class _RecordingDataManager:
    """Records transfer requests."""

    def __init__(self) -> None:
        self.transfers: list[tuple[ExecutionLocation, str, list[ExecutionLocation], str]] = []

    async def transfer_data(
        self,
        src_location: ExecutionLocation,
        src_path: str,
        dst_locations: Sequence[ExecutionLocation],
        dst_path: str,
        writable: bool = False,
    ) -> None:
        self.transfers.append((src_location, src_path, list(dst_locations), dst_path))


def test_retry_policy_backoff_and_cap() -> None:
    """delay_for grows by the backoff factor, is capped, and ends after max_retries."""
    policy = RetryPolicy(max_retries=4, retry_delay=1.0, backoff=2.0, max_delay=5.0)
    assert [policy.delay_for(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, None]


def test_retry_policy_defaults_and_unbounded() -> None:
    """The default policy never retries; max_retries=None retries forever."""
    assert RetryPolicy().delay_for(1) is None
    assert RetryPolicy(max_retries=None, retry_delay=0.5).delay_for(1000) == 0.5


def test_retry_policy_rejects_bad_values() -> None:
    """Negative counts or delays, backoff < 1 and attempt < 1 are ValueErrors."""
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(backoff=0.5)
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=1).delay_for(0)


def test_is_retryable_classifies_by_type_and_attribute() -> None:
    """Definition errors never retry, job failures do, other errors follow `retryable`."""
    assert not is_retryable(ConfigError("bad"))
    assert not is_retryable(FailureHandlingError("gave up"))
    assert is_retryable(JobFailedError("exit 1", exit_code=1))
    assert is_retryable(TransferError("net"))
    assert not is_retryable(RemoteCommandError("no such program", retryable=False))
    assert is_retryable(OSError("boom"))


async def test_retry_failure_manager_retries_until_exhausted() -> None:
    """RetryFailureManager allows 1 + max_retries attempts with growing delays."""
    manager = RetryFailureManager(_Context(), max_retries=2, retry_delay=0.1, backoff=3)  # type: ignore[arg-type]
    first = await manager.decide("/s/0", 1, True)
    assert first.retry and first.attempt == 2 and first.delay == pytest.approx(0.1)
    assert await manager.is_recovering("/s/0")
    second = await manager.decide("/s/0", 2, True)
    assert second.retry and second.delay == pytest.approx(0.3)
    third = await manager.decide("/s/0", 3, True)
    assert not third.retry and third.reason == "exhausted"
    assert not await manager.is_recovering("/s/0")


async def test_retry_failure_manager_recover_uses_error_type() -> None:
    """recover() refuses to retry a definition error and retries a job failure."""
    manager = RetryFailureManager(_Context(), max_retries=1)  # type: ignore[arg-type]
    job = Job("/s/0", "r", "/s", "0")
    assert (await manager.recover(job, ConfigError("bad"))).reason == "not_retryable"
    assert (await manager.recover(job, JobFailedError("exit 2", exit_code=2))).retry


async def test_dummy_failure_manager_never_retries() -> None:
    """DummyFailureManager always gives up."""
    manager = DummyFailureManager(_Context())  # type: ignore[arg-type]
    decision = await manager.decide("/s/0", 1, True)
    assert not decision.retry and decision.reason == "disabled"
    assert not await manager.is_recovering("/s/0")


async def test_default_checkpoint_manager_copies_remote_data_locally(tmp_path: Any) -> None:
    """DefaultCheckpointManager copies non-local data once into its directory; local data is skipped."""
    context = _Context({"config_dir": str(tmp_path)})
    manager = DefaultCheckpointManager(context, checkpoint_dir="ckpt")  # type: ignore[arg-type]
    remote = DataLocation(
        name="n1", deployment="hpc", path="/scratch/out.txt", relpath="out.txt", available=True
    )
    await manager.register(remote)
    await manager.register(remote)
    await manager.register(
        DataLocation(name="localhost", deployment=LOCAL_DEPLOYMENT, path="/x", relpath="x")
    )
    assert len(context.data_manager.transfers) == 1
    src, src_path, dsts, dst_path = context.data_manager.transfers[0]
    assert src == remote.location and src_path == "/scratch/out.txt"
    assert dsts[0].deployment == LOCAL_DEPLOYMENT
    assert dst_path.startswith(str(tmp_path / "ckpt")) and dst_path.endswith("out.txt")
