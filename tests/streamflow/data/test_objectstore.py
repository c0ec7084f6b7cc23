"""Files published to the bus's object store and fetched back where they are missing (agents)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from events.log import EventLog
from streamflow.data.objectstore import fetch_missing, publish_paths
from streamflow.errors import TransferError


def _file(path: Path) -> dict[str, str]:
    return {"class": "File", "path": str(path)}


async def test_a_missing_file_and_directory_come_back_whole(event_log: EventLog, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * 2**20 + 17))  # several chunks of the object store
    folder = tmp_path / "dir"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.txt").write_text("b" * 1000)
    value = [_file(big), {"class": "Directory", "path": str(folder)}]
    assert await publish_paths(event_log.js, value) == 4  # the file, the manifest, two files
    expected = {big: big.read_bytes(), folder / "a.txt": b"a", folder / "sub" / "b.txt": b"b" * 1000}
    big.unlink()
    for path in (folder / "sub" / "b.txt", folder / "a.txt"):
        path.unlink()
    (folder / "sub").rmdir()
    folder.rmdir()

    assert await fetch_missing(event_log.js, value) == 2
    assert {path: path.read_bytes() for path in expected} == expected
    assert not [p for p in tmp_path.rglob("*.part")]  # no partial file left beside them
    assert await fetch_missing(event_log.js, value) == 0  # present now: nothing fetched


async def test_a_file_nobody_published_is_an_error_and_leaves_nothing(event_log: EventLog, tmp_path: Path) -> None:
    ghost = tmp_path / "never-published.txt"
    with pytest.raises(TransferError, match="not published"):
        await fetch_missing(event_log.js, [_file(ghost)])
    assert list(tmp_path.iterdir()) == []
