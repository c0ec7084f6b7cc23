"""Fault tolerance: retry policy, failure manager and checkpoint manager interfaces.

A failed job attempt is reported to the :class:`FailureManager`, which decides (purely, from the
attempt number and whether the error is retryable) whether to run another attempt and after
what delay. Retried attempts run in fresh directories; only the attempt recorded as completed is
used.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING

import msgspec

from streamflow.core.context import SchemaEntity
from streamflow.core.exception import UNRECOVERABLE_ERRORS, JobFailedError, StreamFlowError

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.core.data import DataLocation
    from streamflow.core.workflow import Job, Token

__all__ = ["CheckpointManager", "FailureManager", "RetryDecision", "RetryPolicy", "is_retryable"]


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How many times, and after what delay, a failed job is retried.

    Attributes:
        max_retries: retries after the first attempt (so at most ``1 + max_retries``
            attempts); ``None`` means unbounded.
        retry_delay: seconds before the first retry.
        backoff: factor applied to the delay at each further retry (1 = constant).
        max_delay: upper bound of the delay in seconds; ``None`` means no bound.
    """

    max_retries: int | None = 0
    retry_delay: float = 0.0
    backoff: float = 1.0
    max_delay: float | None = None

    def __post_init__(self) -> None:
        """Check the values.

        Raises:
            ValueError: if a value is negative or ``backoff`` < 1.
        """
        if self.max_retries is not None and self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.retry_delay < 0 or (self.max_delay is not None and self.max_delay < 0):
            raise ValueError("delays must be >= 0")
        if self.backoff < 1:
            raise ValueError("backoff must be >= 1")

    def delay_for(self, attempt: int) -> float | None:
        """Return the delay before the attempt after ``attempt``, or ``None`` if none is left.

        Args:
            attempt: the number of the attempt that just failed (1 for the first).

        Returns:
            Seconds to wait before attempt ``attempt + 1``: ``retry_delay * backoff ** (attempt
            - 1)``, capped at ``max_delay``; ``None`` when ``attempt > max_retries``.

        Raises:
            ValueError: if ``attempt`` < 1.
        """
        if attempt < 1:
            raise ValueError("attempt numbers start at 1")
        if self.max_retries is not None and attempt > self.max_retries:
            return None
        try:
            delay = self.retry_delay * self.backoff ** (attempt - 1)
        except OverflowError:
            delay = float("inf")
        if self.max_delay is not None:
            delay = min(delay, self.max_delay)
        return delay


class RetryDecision(msgspec.Struct, frozen=True, kw_only=True):
    """What to do after a failed attempt.

    Attributes:
        retry: whether to run another attempt.
        delay: seconds to wait before it.
        attempt: the number of the next attempt (when retrying).
        reason: a short, constant explanation (``"retry"``, ``"exhausted"``, ``"not_retryable"``,
            ``"disabled"``).
    """

    retry: bool
    delay: float = 0.0
    attempt: int | None = None
    reason: str = ""


def is_retryable(error: BaseException) -> bool:
    """Tell whether another attempt might fix ``error``, from its type and attributes only.

    Definition errors, unsupported requirements and failure-handling errors are never retryable;
    a :class:`~streamflow.errors.JobFailedError` is (a job may fail transiently, as in StreamFlow);
    other StreamFlow errors follow their ``retryable`` attribute; cancellation is never
    retryable; any other exception is.
    """
    if isinstance(error, UNRECOVERABLE_ERRORS):
        return False
    if isinstance(error, JobFailedError):
        return True
    if isinstance(error, StreamFlowError):
        return error.retryable
    return isinstance(error, Exception)


class FailureManager(SchemaEntity):
    """Decides what happens after a job fails.

    Args:
        context: the StreamFlow context.
    """

    def __init__(self, context: StreamFlowContext) -> None:
        self.context = context

    @abstractmethod
    async def decide(self, job_name: str, attempt: int, error_retryable: bool) -> RetryDecision:
        """Decide whether attempt ``attempt`` of ``job_name``, which failed, gets another attempt.

        Args:
            job_name: the job name.
            attempt: the failed attempt's number (1 for the first).
            error_retryable: whether the error allows a retry (see :func:`is_retryable`).

        Returns:
            The decision.
        """

    async def recover(self, job: Job, exception: BaseException) -> RetryDecision:
        """Decide about a failed ``job`` from the exception it raised.

        Returns:
            ``decide(job.name, job.attempt, is_retryable(exception))``.
        """
        return await self.decide(job.name, job.attempt, is_retryable(exception))

    @abstractmethod
    async def notify(self, output_port: str, output_token: Token) -> None:
        """Hook called when a job produced ``output_token`` on ``output_port``."""

    @abstractmethod
    async def is_recovering(self, job_name: str) -> bool:
        """Whether a retry of ``job_name`` is pending or running."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources. Idempotent."""


class CheckpointManager(SchemaEntity):
    """Keeps safe copies of data, so that data lost on volatile locations can be recovered.

    Args:
        context: the StreamFlow context.
    """

    def __init__(self, context: StreamFlowContext) -> None:
        self.context = context

    @abstractmethod
    async def register(self, data_location: DataLocation) -> None:
        """Take (or schedule) a checkpoint of ``data_location``."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending checkpoints and release resources. Idempotent."""
