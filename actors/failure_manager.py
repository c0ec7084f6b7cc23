"""The FailureManager actor: what to do when a job attempt fails.

It follows ``JobFailed`` and decides, per the run's retry policy (StreamFlow's
``failureManager`` settings: ``max_retries``, ``retry_delay``, plus ``backoff`` and
``max_delay``), either ``JobRetryScheduled`` (the next attempt, after a delay) or
``JobAbandoned`` (the step fails). Failures marked not retryable (invalid inputs,
``permanentFailCodes``) are abandoned at once. It is the only writer of
``sf.ev.<run>.recovery.<job>``.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from actors._runtime import Actor, RunContext
from events.log import Record
from events.schema import JobAbandoned, JobFailed, JobRetryScheduled

__all__ = ["FailureManagerActor", "RetrySettings"]

log = structlog.get_logger("streamflow.failure")


@dataclass(frozen=True)
class RetrySettings:
    """The retry policy.

    Attributes:
        max_retries: retries after the first attempt (0: never retry).
        retry_delay: seconds before the first retry.
        backoff: multiplier of the delay for each further retry.
        max_delay: upper bound of the delay.
    """

    max_retries: int = 0
    retry_delay: float = 0.0
    backoff: float = 2.0
    max_delay: float = 300.0

    def delay_for(self, attempt: int) -> float | None:
        """Delay before ``attempt`` (2 = first retry), or None when retries are exhausted."""
        if attempt - 1 > self.max_retries:
            return None
        return min(self.retry_delay * self.backoff ** max(0, attempt - 2), self.max_delay)


class FailureManagerActor(Actor):
    """Owns ``sf.ev.<run>.recovery.*``.

    Args:
        ctx: the run context.
        settings: the retry policy.
    """

    def __init__(self, ctx: RunContext, settings: RetrySettings) -> None:
        super().__init__(ctx, "failure-manager")
        self.settings = settings
        self.failures: dict[tuple[str, int], JobFailed] = {}
        self.decided: set[tuple[str, int]] = set()

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("job", "recovery")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobFailed):
            self.failures[(body.job, body.attempt)] = body
        elif isinstance(body, JobRetryScheduled):
            self.decided.add((body.job, body.attempt - 1))
        elif isinstance(body, JobAbandoned):
            self.decided.add((body.job, body.attempts))

    async def react(self) -> None:
        for key, failure in list(self.failures.items()):
            if key in self.decided:
                continue
            job, attempt = key
            delay = self.settings.delay_for(attempt + 1) if failure.retryable else None
            if delay is None:
                await self.append("recovery", job, JobAbandoned(job=job, attempts=attempt, reason=failure.error),
                                  key=f"abandon/{attempt}")
            else:
                log.info("job_retry", job=job, attempt=attempt + 1, delay=delay, reason=failure.error)
                await self.append("recovery", job,
                                  JobRetryScheduled(job=job, attempt=attempt + 1, delay=delay, reason=failure.error),
                                  key=f"retry/{attempt + 1}")
            self.decided.add(key)
