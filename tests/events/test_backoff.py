"""The one backoff helper: growth, the cap, the deadline, an early stop."""

from __future__ import annotations

import asyncio
import time

from events.backoff import Backoff


async def test_delays_double_up_to_the_maximum() -> None:
    backoff = Backoff(initial=0.001, maximum=0.004)
    seen = []
    for _ in range(4):
        seen.append(backoff.delay)
        await backoff.wait()
    assert seen == [0.001, 0.002, 0.004, 0.004]


async def test_deadline_and_stop() -> None:
    assert not Backoff(deadline=None).expired
    short = Backoff(deadline=0.01)
    await asyncio.sleep(0.02)
    assert short.expired
    stop = asyncio.Event()
    stop.set()
    begin = time.monotonic()
    await Backoff(initial=10.0).wait(stop)
    assert time.monotonic() - begin < 1.0
