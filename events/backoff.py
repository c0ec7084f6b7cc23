"""The one way StreamFlow waits between two tries: exponential backoff, optionally bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import time

__all__ = ["Backoff"]


class Backoff:
    """Delays between retries: ``initial``, then times ``factor`` each try, never over ``maximum``.

    Args:
        initial: the first delay, seconds.
        maximum: the largest delay, seconds.
        factor: how much each delay grows.
        deadline: seconds from now after which :attr:`expired` is true (None: never).
    """

    def __init__(self, initial: float = 0.05, maximum: float = 1.0, factor: float = 2.0,
                 deadline: float | None = None) -> None:
        self.delay = initial
        self.maximum = maximum
        self.factor = factor
        self._end = None if deadline is None else time.monotonic() + deadline

    @property
    def expired(self) -> bool:
        """Whether the deadline has passed."""
        return self._end is not None and time.monotonic() > self._end

    async def wait(self, stop: asyncio.Event | None = None) -> None:
        """Sleep the current delay (or until ``stop`` is set), then grow it."""
        if stop is None:
            await asyncio.sleep(self.delay)
        else:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay):
                    await stop.wait()
        self.delay = min(self.delay * self.factor, self.maximum)
