"""DockerRequirement images: one pull at a time per image, and a failed pull remembered a while."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from streamflow.cwl import container

# A fake engine: every call is logged; ``image inspect`` fails (the image is absent) and
# ``pull`` fails (no registry) unless the marker file exists, after a short pause so that
# concurrent callers overlap.
ENGINE = """#!/bin/sh
echo "$1" >> {calls}
sleep 0.2
if [ "$1" = pull ]; then
  [ -e {marker} ] && exit 0
  echo 'Error: no such host' >&2
  exit 125
fi
exit 1
"""


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path, Path]:
    monkeypatch.setattr(container, "_present", set())
    monkeypatch.setattr(container, "_failed", {})
    monkeypatch.setattr(container, "_image_locks", {})
    calls, marker = tmp_path / "calls", tmp_path / "registry-up"
    fake = tmp_path / "fake-engine"
    fake.write_text(ENGINE.format(calls=calls, marker=marker))
    fake.chmod(0o755)
    return str(fake), calls, marker


def _calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_a_failed_pull_is_remembered_then_tried_again(engine: tuple[str, Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    fake, calls, marker = engine
    with pytest.raises(container.ImageUnavailable) as first:
        container.ensure_image(fake, "localhost:9/nope:1")
    assert _calls(calls) == ["image", "pull"]
    with pytest.raises(container.ImageUnavailable) as second:
        container.ensure_image(fake, "localhost:9/nope:1")
    assert str(second.value) == str(first.value) and "no such host" in str(second.value)
    assert _calls(calls) == ["image", "pull"]  # the engine was not asked again
    # Another image is another question.
    with pytest.raises(container.ImageUnavailable):
        container.ensure_image(fake, "localhost:9/other:1")
    assert _calls(calls) == ["image", "pull"] * 2
    # Once the failure is older than the TTL, the engine is asked again (and now succeeds).
    marker.touch()
    monkeypatch.setattr(container, "_FAILURE_TTL", 0.0)
    container.ensure_image(fake, "localhost:9/nope:1")
    assert _calls(calls) == ["image", "pull"] * 3
    container.ensure_image(fake, "localhost:9/nope:1")  # present now: no call at all
    assert _calls(calls) == ["image", "pull"] * 3


def test_concurrent_jobs_wait_for_one_pull_of_their_image(engine: tuple[str, Path, Path]) -> None:
    fake, calls, marker = engine
    marker.touch()
    errors: list[BaseException] = []

    def _one() -> None:
        try:
            container.ensure_image(fake, "localhost:9/shared:1")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _calls(calls) == ["image", "pull"]
