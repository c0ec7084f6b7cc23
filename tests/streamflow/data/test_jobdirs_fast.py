"""fresh_attempt_dir: the per-job path of the worker checks less, and stays safe (issue 13)."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from streamflow.data import jobdirs
from streamflow.data.jobdirs import UnsafeDirectoryError, fresh_attempt_dir, private_base


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMFLOW_HOME", str(tmp_path / "home"))


def test_attempts_are_fresh_private_directories(tmp_path: Path) -> None:
    base = str(tmp_path / "work")
    first = fresh_attempt_dir(base, "r1", "j1", attempt=1, generation=0, delivery=1)
    second = fresh_attempt_dir(base, "r1", "j1", attempt=1, generation=0, delivery=2)
    other = fresh_attempt_dir(base, "r1", "j2", attempt=1, generation=0, delivery=1)
    mine = private_base(base)
    assert first.parent == second.parent == mine / "r1" / "j1" and other.parent == mine / "r1" / "j2"
    assert first != second and first.name.startswith("1-0-1-") and second.name.startswith("1-0-2-")
    for path in (first, second, other, first.parent, mine / "r1"):
        info = os.lstat(path)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) & 0o077 == 0
        assert info.st_uid == os.geteuid()


def test_a_removed_run_directory_is_made_again(tmp_path: Path) -> None:
    base = str(tmp_path / "work")
    fresh_attempt_dir(base, "r1", "j1", attempt=1, generation=0, delivery=1)
    shutil.rmtree(private_base(base) / "r1")
    again = fresh_attempt_dir(base, "r1", "j1", attempt=1, generation=0, delivery=1)
    assert again.is_dir()
    shutil.rmtree(tmp_path / "work")  # the whole base, private one included
    assert fresh_attempt_dir(base, "r1", "j3", attempt=1, generation=0, delivery=1).is_dir()


def test_an_existing_job_directory_is_checked(tmp_path: Path) -> None:
    base = str(tmp_path / "work")
    fresh_attempt_dir(base, "r1", "j0", attempt=1, generation=0, delivery=1)  # the run dir is remembered
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (private_base(base) / "r1" / "j1").symlink_to(elsewhere)
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        fresh_attempt_dir(base, "r1", "j1", attempt=1, generation=0, delivery=1)
    assert list(elsewhere.iterdir()) == []
    loose = private_base(base) / "r1" / "j2"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    with pytest.raises(UnsafeDirectoryError, match="private"):
        fresh_attempt_dir(base, "r1", "j2", attempt=1, generation=0, delivery=1)


def test_a_run_directory_replaced_by_a_link_is_refused(tmp_path: Path) -> None:
    base = str(tmp_path / "work")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (private_base(base) / "r9").symlink_to(elsewhere)
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        fresh_attempt_dir(base, "r9", "j1", attempt=1, generation=0, delivery=1)
    assert (private_base(base) / "r9") not in jobdirs._runs


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b"])
def test_bad_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(UnsafeDirectoryError):
        fresh_attempt_dir(str(tmp_path / "work"), bad, "j", attempt=1, generation=0, delivery=1)
    with pytest.raises(UnsafeDirectoryError):
        fresh_attempt_dir(str(tmp_path / "work"), "r", bad, attempt=1, generation=0, delivery=1)
