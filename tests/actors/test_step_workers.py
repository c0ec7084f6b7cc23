"""Steps process many tags and put many tokens through a fixed number of workers, not a task each."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors import step as step_module
from actors.step import StepActor


class _Fake:
    """Just what ``put_many`` and ``_process_concurrently`` use of a step."""

    def __init__(self, fail_at: set[str] | None = None) -> None:
        self.fail_at = fail_at or set()
        self.done: list[str] = []
        self.in_flight = 0
        self.most = 0
        self.most_tasks = 0

    async def _work(self, tag: str) -> None:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        self.most_tasks = max(self.most_tasks, len(asyncio.all_tasks()))
        try:
            await asyncio.sleep(0)
            if tag in self.fail_at:
                raise ValueError(tag)
            self.done.append(tag)
        finally:
            self.in_flight -= 1

    async def put(self, port: str, tag: str, value: Any, *, inputs: Any = None, job: Any = None) -> None:
        await self._work(tag)

    async def _process_one(self, tag: str) -> None:
        await self._work(tag)


async def test_put_many_runs_a_bounded_number_of_workers() -> None:
    fake = _Fake()
    before = len(asyncio.all_tasks())
    tags = [f"0.{i}" for i in range(1000)]
    await StepActor.put_many(fake, [("p", tag, i) for i, tag in enumerate(tags)])  # type: ignore[arg-type]
    assert sorted(fake.done) == sorted(tags)
    assert fake.most <= step_module._PUT_CONCURRENCY
    assert fake.most_tasks <= before + step_module._PUT_CONCURRENCY  # not a task per put


async def test_put_many_stops_starting_puts_after_an_error_and_raises_it() -> None:
    fake = _Fake(fail_at={"0.3"})
    with pytest.raises(ValueError, match=r"0\.3"):
        await StepActor.put_many(fake, [("p", f"0.{i}", i) for i in range(1000)])  # type: ignore[arg-type]
    assert len(fake.done) < 1000 - step_module._PUT_CONCURRENCY


async def test_ready_tags_are_all_processed_and_the_first_error_in_tag_order_is_raised() -> None:
    fake = _Fake(fail_at={"0.900", "0.10"})
    before = len(asyncio.all_tasks())
    tags = [f"0.{i}" for i in range(1000)]
    with pytest.raises(ValueError, match=r"^0\.10$"):
        await StepActor._process_concurrently(fake, tags)  # type: ignore[arg-type]
    assert len(fake.done) == 998  # every other tag was processed
    assert fake.most_tasks <= before + step_module._PUT_CONCURRENCY
