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
from typing import Any, ClassVar

import structlog

from actors._runtime import Actor, RunContext
from events.log import Record
from events.schema import (
    DataLocationsRegistered,
    InputsLost,
    JobAbandoned,
    JobCompleted,
    JobFailed,
    JobRetryScheduled,
    JobRollback,
)

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

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "failures": dict[tuple[str, int], JobFailed],
        "decided": set[tuple[str, int]],
        "producers": dict[str, str],
        "attempts": dict[str, int],
        "losses": dict[tuple[str, int], InputsLost],
        "handled_losses": set[tuple[str, int]],
        "rollbacks": dict[str, int],
    }

    def __init__(self, ctx: RunContext, settings: RetrySettings) -> None:
        super().__init__(ctx, "failure-manager")
        self.settings = settings
        self.failures: dict[tuple[str, int], JobFailed] = {}
        self.decided: set[tuple[str, int]] = set()
        self.producers: dict[str, str] = {}  # path -> job that registered it
        self.attempts: dict[str, int] = {}  # job -> highest attempt seen
        self.losses: dict[tuple[str, int], InputsLost] = {}
        self.handled_losses: set[tuple[str, int]] = set()
        self.rollbacks: dict[str, int] = {}  # producer job -> rollbacks so far

    def interested(self, record: Record) -> bool:
        return record.aggregate in ("job", "recovery", "data")

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, JobFailed):
            self.failures[(body.job, body.attempt)] = body
        elif isinstance(body, JobRetryScheduled):
            self.decided.add((body.job, body.attempt - 1))
        elif isinstance(body, JobAbandoned):
            self.decided.add((body.job, body.attempts))
            self.handled_losses.update(k for k in self.losses if k[0] == body.job)
        elif isinstance(body, JobCompleted):
            self.attempts[body.job] = max(self.attempts.get(body.job, 1), body.attempt)
        elif isinstance(body, DataLocationsRegistered):
            for item in body.files:
                self.producers.setdefault(item.path, body.job)
        elif isinstance(body, InputsLost):
            self.losses[(body.job, body.attempt)] = body
        elif isinstance(body, JobRollback):
            self.attempts[body.job] = max(self.attempts.get(body.job, 1), body.attempt)
            self.rollbacks[body.job] = self.rollbacks.get(body.job, 0) + 1
            self.handled_losses.add((body.for_job, self._loss_attempt(body)))

    def _loss_attempt(self, rollback: JobRollback) -> int:
        matching = [k[1] for k in self.losses if k[0] == rollback.for_job]
        return max(matching) if matching else 0

    def _producer_of(self, path: str) -> str | None:
        """The job that registered ``path``, or a directory containing it."""
        probe = path
        while probe and probe != "/":
            if probe in self.producers:
                return self.producers[probe]
            probe = probe.rsplit("/", 1)[0]
        return None

    async def _handle_loss(self, key: tuple[str, int], loss: InputsLost) -> None:
        job = loss.job
        producers = {p for p in (self._producer_of(path) for path in loss.paths)}
        budget = max(1, self.settings.max_retries)
        if None in producers or not producers:
            reason = f"input data lost and not produced by this run: {', '.join(loss.paths[:3])}"
        elif any(self.rollbacks.get(p, 0) >= budget for p in producers if p):
            reason = f"input data lost again after {budget} rollback(s): {', '.join(loss.paths[:3])}"
        else:
            for producer in sorted(p for p in producers if p):
                attempt = self.attempts.get(producer, 1) + 1
                log.info("job_rollback", job=producer, attempt=attempt, for_job=job)
                await self.append("recovery", producer,
                                  JobRollback(job=producer, attempt=attempt, for_job=job, paths=loss.paths),
                                  key=f"rollback/{attempt}")
                self.attempts[producer] = attempt
                self.rollbacks[producer] = self.rollbacks.get(producer, 0) + 1
            self.handled_losses.add(key)
            return
        await self.append("recovery", job, JobAbandoned(job=job, attempts=0, reason=reason, error_type="DataLost"),
                          key=f"abandon/lost/{key[1]}")
        self.handled_losses.add(key)

    async def react(self) -> None:
        for key, loss in list(self.losses.items()):
            if key not in self.handled_losses:
                await self._handle_loss(key, loss)
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
