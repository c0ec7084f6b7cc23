"""Private job directories (issue 14, points 1 and 2): unit checks, a hostile local user, two homes.

The hostile-user tests create a second local user (``useradd``) and act as them with
``runuser``; they skip, saying why, when the suite does not run as root.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamflow.data.jobdirs import UnsafeDirectoryError, new_attempt_dir, private_base
from tests.conftest import run_cli

HOSTILE = "sfhostile"

WRITER = """\
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'echo written by the job > out.txt']
inputs: []
outputs:
  out: {type: File, outputBinding: {glob: out.txt}}
"""


@pytest.fixture(scope="module")
def hostile() -> str:
    """A second local user, created when missing (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("acting as a second local user needs root (useradd, runuser)")
    if shutil.which("useradd") is None or shutil.which("runuser") is None:
        pytest.skip("useradd/runuser are not installed")
    if subprocess.run(["id", HOSTILE], capture_output=True, check=False).returncode != 0:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", HOSTILE], check=True,
                       capture_output=True)
    return HOSTILE


def _as(user: str, *command: str) -> None:
    subprocess.run(["runuser", "-u", user, "--", *command], check=True, capture_output=True, timeout=30)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory like /tmp (mode 1777), which every local user can write to."""
    path = Path(tempfile.mkdtemp(prefix="sf-shared-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_private_base_is_0700_ours_and_unique_per_store(tmp_path: Path) -> None:
    """The private base is created 0700, and two stores get two different ones."""
    base = tmp_path / "jobs"
    one = private_base(base, "/home/a/.streamflow")
    two = private_base(base, "/home/b/.streamflow")
    assert one != two and one.parent == two.parent == base
    for path in (one, two):
        info = os.lstat(path)
        assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
        assert info.st_uid == os.geteuid()
    assert private_base(base, "/home/a/.streamflow") == one  # verified, and reused


def test_private_base_refuses_a_symlink_or_an_open_mode(tmp_path: Path) -> None:
    """A link at the private base's name is refused, not followed; a 0755 private base too."""
    base = tmp_path / "jobs"
    mine = private_base(base, "store")
    mine.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    mine.symlink_to(elsewhere)
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        private_base(base, "store")
    mine.unlink()
    mine.mkdir(mode=0o755)
    mine.chmod(0o755)
    with pytest.raises(UnsafeDirectoryError, match="0755"):
        private_base(base, "store")


def test_a_base_writable_by_others_without_sticky_bit_is_refused(tmp_path: Path) -> None:
    """Anybody could rename our directories in a 0777 base: refused."""
    base = tmp_path / "open"
    base.mkdir()
    base.chmod(0o777)
    with pytest.raises(UnsafeDirectoryError, match="sticky"):
        private_base(base, "store")
    base.chmod(0o1777)
    assert private_base(base, "store").is_dir()


def test_every_attempt_gets_a_new_directory(tmp_path: Path) -> None:
    """Same job, attempt, generation and delivery twice: two fresh, empty, private directories."""
    base = private_base(tmp_path / "jobs", "store")
    first = new_attempt_dir(base, "run1", "s1-0", attempt=1, generation=0, delivery=1)
    (first / "left-over").write_text("x")
    second = new_attempt_dir(base, "run1", "s1-0", attempt=1, generation=0, delivery=1)
    assert first != second and list(second.iterdir()) == []
    assert first.name.startswith("1-0-1-") and stat.S_IMODE(second.stat().st_mode) == 0o700
    with pytest.raises(UnsafeDirectoryError):
        new_attempt_dir(base, "..", "s1-0", attempt=1, generation=0, delivery=1)


def test_hostile_user_cannot_plant_or_replace_the_private_base(hostile: str, shared_tmp: Path) -> None:
    """Another user pre-creates our private base (as a link, then as their own directory): refused."""
    base = shared_tmp / "streamflow-jobs"
    base.mkdir(mode=0o755)
    base.chmod(0o1777)
    name = base / f"{os.geteuid()}-{hashlib.sha256(b'store').hexdigest()[:16]}"
    target = shared_tmp / "theirs"
    _as(hostile, "mkdir", "-m", "0777", str(target))
    _as(hostile, "ln", "-s", str(target), str(name))
    with pytest.raises(UnsafeDirectoryError, match="symbolic link"):
        private_base(base, "store")
    assert list(target.iterdir()) == []
    _as(hostile, "rm", str(name))
    _as(hostile, "mkdir", "-m", "0700", str(name))
    with pytest.raises(UnsafeDirectoryError, match="belongs to uid"):
        private_base(base, "store")


def test_hostile_user_base_with_planted_links_writes_nothing_through_them(
        hostile: str, shared_tmp: Path, sf_env: dict[str, str]) -> None:
    """Issue 14.1(a): a user who owns the default base and plants links at every predictable
    name cannot make a job write through them: the run fails cleanly, the victim file is intact."""
    run_id = f"planted{os.getpid() % 10000}"
    victim = shared_tmp / "victim"
    victim.write_text("precious\n")
    victim.chmod(0o600)
    base = shared_tmp / "streamflow-jobs"
    _as(hostile, "mkdir", "-m", "0777", str(base))
    for sub in ("1-1", "1-0-1"):  # the old layout's attempt directory, and a guess at the new one
        out = base / run_id / "s0-0" / sub / "out"
        _as(hostile, "mkdir", "-p", "-m", "0777", str(out))
        _as(hostile, "ln", "-s", str(victim), str(out / "out.txt"))
    tool = shared_tmp / "writer.cwl"
    tool.write_text(WRITER)
    env = dict(sf_env, TMPDIR=str(shared_tmp))
    result = run_cli(["run", "--run-id", run_id, "--outdir", str(shared_tmp / "delivered"), str(tool)], env)
    assert victim.read_text() == "precious\n"
    assert result.returncode != 0
    assert "belongs to uid" in result.stderr


def test_two_homes_same_run_id_do_not_share_job_directories_or_inodes(
        tmp_path: Path, sf_env: dict[str, str], nats_server: object) -> None:
    """Issue 14.1(b): the same run id under two homes (two buses) runs in two directories, and the
    first run's delivered output is a file of its own (one link), unchanged by the second run."""
    tool = tmp_path / "writer.cwl"
    tool.write_text(WRITER.replace("echo written by the job", "echo $RANDOM$$"))
    outputs = []
    for name in ("home1", "home2"):
        env = {k: v for k, v in sf_env.items() if not k.startswith("STREAMFLOW_NATS")}
        env["STREAMFLOW_HOME"] = str(tmp_path / name)
        result = run_cli(["run", "--run-id", "samerun", "--outdir", str(tmp_path / f"out-{name}"), str(tool)], env)
        assert result.returncode == 0, result.stderr
        outputs.append(json.loads(result.stdout)["out"])
        from tests.conftest import stop_runner_daemons

        stop_runner_daemons(tmp_path / name)
    first, second = (Path(o["path"]) for o in outputs)
    assert os.stat(first).st_nlink == 1 and os.stat(second).st_nlink == 1
    digest = "sha1$" + hashlib.sha1(first.read_bytes()).hexdigest()
    assert digest == outputs[0]["checksum"]
    jobs = tmp_path / "streamflow-jobs"
    assert len([p for p in jobs.iterdir() if p.is_dir()]) == 2  # one private base per home
    for private in jobs.iterdir():
        assert stat.S_IMODE(private.stat().st_mode) == 0o700
        for produced in private.rglob("out.txt"):
            assert stat.S_IMODE(produced.stat().st_mode) == 0o600  # the tool ran with umask 077
