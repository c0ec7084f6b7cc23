"""The DefaultScheduler: targets in order, room from its bookkeeping, the policy's choice, co-allocation."""

from __future__ import annotations

import asyncio

import pytest

from streamflow.core.deployment import BindingFilter, Target
from streamflow.core.scheduling import Hardware
from streamflow.core.workflow import Job, Status
from streamflow.errors import WorkflowExecutionError
from streamflow.scheduling.filters import ShuffleBindingFilter
from streamflow.scheduling.scheduler import DefaultScheduler, LocationCapacity, targets_of


def _job(name: str, inputs: dict[str, object] | None = None) -> Job:
    return Job(name=name, run_id="r1", step="/s", tag="0", inputs=inputs or {})


def _nodes(deployment: str, *names: str, cores: float = 2.0, slots: int = 0) -> list[LocationCapacity]:
    return [LocationCapacity(deployment, name, cores, 1024.0, f"{name}.example.org", slots) for name in names]


async def test_a_job_waits_until_a_location_has_room_then_gets_it() -> None:
    scheduler = DefaultScheduler()
    scheduler.record_locations("hpc", _nodes("hpc", "n1", cores=2))
    first = await scheduler.schedule(_job("a"), targets_of(["hpc"], None, 1), Hardware(cores=2))
    assert [loc.name for loc in first.locations] == ["n1"]
    waiting = asyncio.create_task(scheduler.schedule(_job("b"), targets_of(["hpc"], None, 1), Hardware(cores=1)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await scheduler.notify_status("a", Status.COMPLETED)
    second = await asyncio.wait_for(waiting, 1)
    assert [loc.name for loc in second.locations] == ["n1"]


async def test_targets_are_tried_in_order() -> None:
    scheduler = DefaultScheduler()
    scheduler.record_locations("big", _nodes("big", "b1", cores=1))
    scheduler.record_locations("small", _nodes("small", "s1", cores=1))
    targets = targets_of(["big", "small"], None, 1)
    one = await scheduler.schedule(_job("a"), targets, Hardware(cores=1))
    two = await scheduler.schedule(_job("b"), targets, Hardware(cores=1))
    assert (one.target.deployment.name, two.target.deployment.name) == ("big", "small")


async def test_data_locality_prefers_the_location_holding_the_inputs() -> None:
    scheduler = DefaultScheduler()
    scheduler.record_locations("nodes", _nodes("nodes", "n1", "n2"))
    scheduler.record_data("/data/big.bin", "nodes", "n2", 10_000)
    job = _job("a", {"x": {"class": "File", "path": "/data/big.bin"}})
    allocation = await scheduler.schedule(job, targets_of(["nodes"], None, 1), Hardware(cores=1))
    assert [loc.name for loc in allocation.locations] == ["n2"]


async def test_co_allocation_takes_distinct_locations_with_their_hostnames() -> None:
    scheduler = DefaultScheduler()
    scheduler.record_locations("mpi", _nodes("mpi", "n1", "n2", "n3"))
    allocation = await scheduler.schedule(_job("a"), targets_of(["mpi"], "openmpi", 2), Hardware(cores=2))
    names = [loc.name for loc in allocation.locations]
    assert len(set(names)) == 2
    assert all(loc.hostname == f"{loc.name}.example.org" for loc in allocation.locations)
    # The third node alone cannot take a second 2-location job.
    waiting = asyncio.create_task(scheduler.schedule(_job("b"), targets_of(["mpi"], None, 2), Hardware(cores=2)))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await scheduler.notify_status("a", Status.COMPLETED)
    assert len((await asyncio.wait_for(waiting, 1)).locations) == 2


async def test_slots_limit_jobs_per_location_and_unknown_targets_wait() -> None:
    scheduler = DefaultScheduler()
    scheduler.record_locations("queue", _nodes("queue", "q", cores=64, slots=1))
    await scheduler.schedule(_job("a"), targets_of(["queue"], None, 1), Hardware(cores=1))
    blocked = asyncio.create_task(scheduler.schedule(_job("b"), targets_of(["queue"], None, 1), Hardware(cores=1)))
    later = asyncio.create_task(scheduler.schedule(_job("c"), targets_of(["cloud"], None, 1), Hardware(cores=1)))
    await asyncio.sleep(0.05)
    assert not blocked.done() and not later.done()
    scheduler.record_locations("cloud", _nodes("cloud", "vm1"))
    await scheduler.dispatch()
    assert (await asyncio.wait_for(later, 1)).target.deployment.name == "cloud"
    await scheduler.close()
    with pytest.raises(asyncio.CancelledError):
        await blocked


class _Reverse(BindingFilter):
    """A test filter: the targets in reverse order."""

    async def get_targets(self, job: Job, targets: list[Target]) -> list[Target]:
        return list(reversed(targets))


async def test_binding_filters_reorder_the_targets_of_each_job() -> None:
    scheduler = DefaultScheduler(filters={"reverse": _Reverse("reverse")})
    scheduler.record_locations("first", _nodes("first", "f1"))
    scheduler.record_locations("second", _nodes("second", "s1"))
    targets = targets_of(["first", "second"], None, 1)
    plain = await scheduler.schedule_filtered(_job("a"), targets, [], Hardware(cores=1))
    reversed_ = await scheduler.schedule_filtered(_job("b"), targets, ["reverse"], Hardware(cores=1))
    assert (plain.target.deployment.name, reversed_.target.deployment.name) == ("first", "second")
    with pytest.raises(WorkflowExecutionError, match="no binding filter named 'missing'"):
        await scheduler.schedule_filtered(_job("c"), targets, ["missing"], Hardware(cores=1))


async def test_shuffle_filter_is_a_permutation_reproducible_with_a_seed() -> None:
    targets = targets_of([f"d{i}" for i in range(8)], None, 1)
    job = _job("a")
    first = await ShuffleBindingFilter("s", seed=7).get_targets(job, targets)
    again = await ShuffleBindingFilter("s", seed=7).get_targets(job, targets)
    assert [t.deployment.name for t in first] == [t.deployment.name for t in again]
    assert sorted(t.deployment.name for t in first) == [f"d{i}" for i in range(8)]
    assert [t.deployment.name for t in first] != [f"d{i}" for i in range(8)]


async def test_submitted_requests_wait_as_records_and_are_granted_in_order() -> None:
    """``submit``: no task per waiting request; the job is built when first examined, grants come in order."""
    scheduler = DefaultScheduler()
    scheduler.record_locations("hpc", _nodes("hpc", "n1", cores=1))
    built: list[str] = []
    granted: list[str] = []

    def build(name: str) -> tuple[Job, list[Target]]:
        built.append(name)
        return _job(name), targets_of(["hpc"], None, 1)

    before = len(asyncio.all_tasks())
    for name in ("a", "b", "c"):
        scheduler.submit(name, Hardware(cores=1), lambda name=name: build(name),  # type: ignore[misc]
                         lambda allocation: granted.append(allocation.job))
    scheduler.submit("a", Hardware(cores=1), lambda: build("x"), lambda allocation: granted.append("dup"))
    assert len(asyncio.all_tasks()) == before
    await scheduler.dispatch()
    assert granted == ["a"] and built == ["a"]  # "b" and "c" not even built: every location is full
    await scheduler.notify_status("a", Status.COMPLETED)
    assert granted == ["a", "b"]
    assert await scheduler.get_allocation("a") is None  # a released job leaves only its name behind
    scheduler.record_allocation("a", "hpc", ["n1"], 1.0, 0.0)  # replayed again: ignored
    await scheduler.notify_status("b", Status.COMPLETED)
    assert granted == ["a", "b", "c"]
    with pytest.raises(WorkflowExecutionError, match="already ended"):
        await scheduler.schedule(_job("a"), targets_of(["hpc"], None, 1), Hardware(cores=1))
    await scheduler.close()
