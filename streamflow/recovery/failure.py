"""Failure managers: ``dummy`` (never retries) and ``default``/``retry`` (retries per policy)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import structlog

from streamflow.core.recovery import FailureManager, RetryDecision, RetryPolicy

if TYPE_CHECKING:
    from streamflow.core.context import StreamFlowContext
    from streamflow.core.workflow import Token

__all__ = ["DummyFailureManager", "RetryFailureManager"]

_log = structlog.get_logger(__name__)


class DummyFailureManager(FailureManager):
    """The failure manager used when fault tolerance is disabled: a failure is final."""

    async def decide(self, job_name: str, attempt: int, error_retryable: bool) -> RetryDecision:
        """Never retry."""
        return RetryDecision(retry=False, reason="disabled")

    async def notify(self, output_port: str, output_token: Token) -> None:
        """Do nothing."""

    async def is_recovering(self, job_name: str) -> bool:
        """Never recovering."""
        return False

    async def close(self) -> None:
        """Nothing to release."""


class RetryFailureManager(FailureManager):
    """Retries failed jobs with a bounded number of attempts and exponential backoff.

    Decisions are pure functions of ``(attempt, error_retryable)`` and the policy, so replaying
    the same failures gives the same decisions. The manager remembers which jobs have a retry
    pending until their next attempt is reported (:meth:`notify_attempt`) or they succeed.

    Args:
        context: the StreamFlow context.
        max_retries: retries after the first attempt; ``None`` for unbounded.
        retry_delay: seconds before the first retry.
        backoff: factor applied to the delay at each further retry.
        max_delay: upper bound of the delay in seconds.
    """

    def __init__(
        self,
        context: StreamFlowContext,
        max_retries: int | None = 3,
        retry_delay: float = 0.0,
        backoff: float = 1.0,
        max_delay: float | None = None,
    ) -> None:
        super().__init__(context)
        self.policy = RetryPolicy(
            max_retries=max_retries, retry_delay=retry_delay, backoff=backoff, max_delay=max_delay
        )
        self._pending: set[str] = set()

    @classmethod
    def get_schema(cls) -> dict[str, Any]:
        """Return the schema of ``failureManager.config``."""
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "properties": {
                "max_retries": {
                    "type": ["integer", "null"],
                    "minimum": 0,
                    "description": "Retries after the first attempt",
                },
                "retry_delay": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Seconds before the first retry",
                },
                "backoff": {"type": "number", "minimum": 1, "description": "Delay factor per further retry"},
                "max_delay": {
                    "type": ["number", "null"],
                    "minimum": 0,
                    "description": "Upper bound of the delay",
                },
            },
            "additionalProperties": False,
        }

    async def decide(self, job_name: str, attempt: int, error_retryable: bool) -> RetryDecision:
        """Retry if the error is retryable and the policy has attempts left."""
        if not error_retryable:
            self._pending.discard(job_name)
            decision = RetryDecision(retry=False, reason="not_retryable")
        elif (delay := self.policy.delay_for(attempt)) is None:
            self._pending.discard(job_name)
            decision = RetryDecision(retry=False, reason="exhausted")
        else:
            self._pending.add(job_name)
            decision = RetryDecision(retry=True, delay=delay, attempt=attempt + 1, reason="retry")
        _log.info(
            "failure_decision",
            job=job_name,
            attempt=attempt,
            retry=decision.retry,
            delay=decision.delay,
            reason=decision.reason,
        )
        return decision

    async def notify_attempt(self, job_name: str) -> None:
        """Record that the pending retry of ``job_name`` has started."""
        self._pending.discard(job_name)

    async def notify(self, output_port: str, output_token: Token) -> None:
        """Do nothing: outputs need no tracking for plain retries."""

    async def is_recovering(self, job_name: str) -> bool:
        """Whether a retry of ``job_name`` was decided and has not started yet."""
        return job_name in self._pending

    async def close(self) -> None:
        """Forget pending retries."""
        self._pending.clear()
