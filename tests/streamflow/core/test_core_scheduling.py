"""Tests of hardware arithmetic and the data-locality policy."""

from __future__ import annotations

from streamflow.core.data import DataLocation, DataType
from streamflow.core.deployment import LocalTarget
from streamflow.core.scheduling import AvailableLocation, Hardware, JobAllocation, LocationAllocation
from streamflow.core.workflow import Job, Status
from streamflow.scheduling.policy import DataLocalityPolicy

JOB = Job("/step/0", "run", "/step", "0")


def test_hardware_add_sub_and_satisfies() -> None:
    """Hardware adds and subtracts per field and per mount point."""
    a = Hardware(cores=4, memory=1024, storage={"/": 100})
    b = Hardware(cores=1, memory=256, storage={"/": 40, "/scratch": 10})
    assert a + b == Hardware(cores=5, memory=1280, storage={"/": 140, "/scratch": 10})
    assert a - b == Hardware(cores=3, memory=768, storage={"/": 60, "/scratch": -10})
    assert a.satisfies(Hardware(cores=4, memory=1024, storage={"/": 100}))
    assert not a.satisfies(b)  # no /scratch on a
    assert Hardware.total([a, b, b]) == a + b + b


def test_available_location_exposes_execution_location() -> None:
    """AvailableLocation.location builds the matching ExecutionLocation, wraps included."""
    host = AvailableLocation(name="n1", deployment="ssh", hostname="h")
    inner = AvailableLocation(name="c", deployment="docker", service="web", wraps=host)
    location = inner.location
    assert str(location) == "docker/web/c" and location.wraps is not None and location.wraps.name == "n1"


def _locations(*names: str, slots: int | None = 2, cores: float = 4) -> dict[str, AvailableLocation]:
    return {
        n: AvailableLocation(name=n, deployment="d", slots=slots, hardware=Hardware(cores=cores, memory=1000))
        for n in names
    }


def _data(
    name: str, size: int, available: bool = True, data_type: DataType = DataType.PRIMARY
) -> DataLocation:
    return DataLocation(
        name=name,
        deployment="d",
        path=f"/data/{name}/{size}",
        relpath="x",
        data_type=data_type,
        available=available,
        size=size,
    )


async def test_policy_prefers_location_with_most_input_bytes() -> None:
    """The location holding the most bytes of the inputs wins."""
    locations = _locations("a", "b", "c")
    data = [_data("a", 10), _data("b", 30), _data("a", 15)]
    chosen = await DataLocalityPolicy().get_location(JOB, None, locations, {}, {}, data)
    assert chosen is not None and chosen.name == "b"


async def test_policy_ignores_invalid_and_unavailable_copies() -> None:
    """INVALID or not-yet-available copies do not attract the job."""
    locations = _locations("a", "b")
    data = [_data("b", 100, data_type=DataType.INVALID), _data("b", 100, available=False)]
    chosen = await DataLocalityPolicy().get_location(JOB, None, locations, {}, {}, data)
    assert chosen is not None and chosen.name == "a"


async def test_policy_falls_back_to_first_location_with_room() -> None:
    """Without data, the first location with a free slot and enough hardware is chosen."""
    locations = _locations("a", "b", slots=1)
    jobs = {"j1": JobAllocation("j1", LocalTarget(), [locations["a"].location], Status.RUNNING)}
    allocs = {"d": {"a": LocationAllocation("a", "d", ["j1"])}}
    chosen = await DataLocalityPolicy().get_location(JOB, None, locations, jobs, allocs, [])
    assert chosen is not None and chosen.name == "b"


async def test_policy_skips_data_location_without_room() -> None:
    """A location with the data but no free cores is skipped for one that has room."""
    locations = _locations("a", "b", slots=None, cores=4)
    jobs = {
        "j1": JobAllocation("j1", LocalTarget(), [locations["b"].location], Status.RUNNING, Hardware(cores=3))
    }
    allocs = {"d": {"b": LocationAllocation("b", "d", ["j1"])}}
    chosen = await DataLocalityPolicy().get_location(
        JOB, Hardware(cores=2), locations, jobs, allocs, [_data("b", 50)]
    )
    assert chosen is not None and chosen.name == "a"


async def test_policy_finished_jobs_free_their_slots() -> None:
    """COMPLETED jobs no longer count against slots."""
    locations = _locations("a", slots=1)
    jobs = {"j1": JobAllocation("j1", LocalTarget(), [locations["a"].location], Status.COMPLETED)}
    allocs = {"d": {"a": LocationAllocation("a", "d", ["j1"])}}
    chosen = await DataLocalityPolicy().get_location(JOB, None, locations, jobs, allocs, [])
    assert chosen is not None and chosen.name == "a"


async def test_policy_returns_none_when_nothing_fits() -> None:
    """When no location has room (slots or hardware), the policy returns None."""
    locations = _locations("a", "b", cores=1)
    assert await DataLocalityPolicy().get_location(JOB, Hardware(cores=2), locations, {}, {}, []) is None
    assert await DataLocalityPolicy().get_location(JOB, None, {}, {}, {}, []) is None


async def test_policy_prefers_any_copy_when_sizes_unknown() -> None:
    """With copies of unknown size (0 bytes), a location holding any copy is preferred."""
    locations = _locations("a", "b")
    chosen = await DataLocalityPolicy().get_location(JOB, None, locations, {}, {}, [_data("b", 0)])
    assert chosen is not None and chosen.name == "b"
