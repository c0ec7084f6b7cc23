"""A private rootful Podman with its Docker-compatible API socket, for container connector tests.

No systemd, no registry: Podman runs with ``runc``, ``cgroupfs``, a file events logger and
explicit ``default_ulimits`` (container rlimits may not exceed this process's hard limits), its
configuration and storage under a directory of its own (``CONTAINERS_CONF``,
``CONTAINERS_STORAGE_CONF``), and ``podman system service`` answers the Docker API on
``unix://<dir>/podman.sock``, so the ``docker`` CLI, docker-py and testcontainers work against it.
The image is built locally from ``/bin/busybox`` (busybox-static) with ``podman import``: it
has ``/bin/sh``, ``tar``, ``mkdir``, ``mv``, ``cat``, ``sha1sum``, ``nproc``, ``setsid``...

Usage::

    info = start_podman(Path("/tmp/pod"))       # or the session fixture ``podman``
    env = {**os.environ, **info.env}            # docker/podman CLIs talk to this instance
    ... docker --host info.docker_host run -d info.image sleep infinity ...
    stop_podman(info)

Import as ``from tests.backends.podman import PodmanInfo, podman, start_podman, stop_podman``.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["IMAGE", "PodmanInfo", "podman", "podman_available", "start_podman", "stop_podman"]

IMAGE = "localhost/sf-busybox:latest"
"""The tag of the image :func:`start_podman` builds from ``/bin/busybox``."""


@dataclass(frozen=True)
class PodmanInfo:
    """A running private Podman.

    Attributes:
        docker_host: the Docker API address, ``unix://<dir>/podman.sock`` (a ``DOCKER_HOST``).
        env: the variables that point the ``docker`` and ``podman`` CLIs, docker-py and
            testcontainers at this instance (``DOCKER_HOST``, ``CONTAINERS_CONF``,
            ``CONTAINERS_STORAGE_CONF``, ``TESTCONTAINERS_*``); merge them into a child's
            environment (or ``os.environ``).
        image: the local busybox image (``localhost/sf-busybox:latest``).
        directory: the directory holding the configuration, storage, socket and logs.
        service_pid: the pid of ``podman system service``.
    """

    docker_host: str
    env: dict[str, str] = field(default_factory=dict)
    image: str = IMAGE
    directory: Path = Path()
    service_pid: int = 0


def podman_available() -> str | None:
    """Return why a private Podman cannot be started here, or ``None`` if it can."""
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman runc busybox-static)"
    if not os.access("/bin/busybox", os.X_OK):
        return "/bin/busybox is missing (apt-get install busybox-static)"
    if os.geteuid() != 0:
        return "rootful podman needs root"
    return None


def _hard_limit(name: str, cap: int) -> int:
    with open("/proc/self/limits") as limits:
        for line in limits:
            if line.startswith(name):
                value = line[len(name) :].split()[1]
                return cap if value == "unlimited" else min(int(value), cap)
    return cap


def _write_config(directory: Path) -> dict[str, str]:
    nofile = _hard_limit("Max open files", 1048576)
    nproc = _hard_limit("Max processes", 32768)  # podman caps its own at 32768
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    (directory / "containers.conf").write_text(
        "[containers]\n"
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
        "[engine]\n"
        'runtime = "runc"\n'  # crun refuses this machine's hybrid cgroup layout
        'cgroup_manager = "cgroupfs"\n'
        'events_logger = "file"\n'
        f'events_logfile_path = "{directory}/events.log"\n'
        f'tmp_dir = "{directory}/tmp"\n'
    )
    (directory / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{directory}/storage"\nrunroot = "{directory}/run"\n'
    )
    return {
        "CONTAINERS_CONF": str(directory / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(directory / "storage.conf"),
        "DOCKER_HOST": f"unix://{directory}/podman.sock",
        "TESTCONTAINERS_RYUK_DISABLED": "true",
        "TESTCONTAINERS_CONNECTION_MODE": "docker_host",
        "TESTCONTAINERS_HOST_OVERRIDE": "127.0.0.1",
    }


def _rootfs_tar(directory: Path) -> Path:
    """A tarball of a minimal root file system: busybox and its applet links, passwd, /tmp."""
    path = directory / "rootfs.tar"
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout
    with tarfile.open(path, "w") as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("root", 0o700), ("tmp", 0o1777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in sorted(set(applets.split()) - {"busybox"}):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(info)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return path


def _podman(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _wait_socket(path: Path, pid: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if path.exists():
            with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as sock:
                sock.connect(str(path))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
                if b" 200 " in sock.recv(1024):
                    return
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                raise RuntimeError("podman system service exited before answering")
        time.sleep(0.1)
    raise RuntimeError(f"podman system service did not answer on {path}")


def start_podman(directory: Path | str) -> PodmanInfo:
    """Start a private Podman API service under ``directory`` and build the busybox image.

    Raises:
        RuntimeError: if Podman fails to import the image or the service does not answer.
    """
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    env = _write_config(directory)
    if _podman(env, "image", "exists", IMAGE).returncode != 0:
        result = _podman(env, "import", "--change", 'CMD ["/bin/sh"]', str(_rootfs_tar(directory)), IMAGE)
        if result.returncode != 0:
            raise RuntimeError(f"podman import failed: {result.stderr.strip()}")
    sock = directory / "podman.sock"
    sock.unlink(missing_ok=True)
    with open(directory / "service.log", "wb") as log:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{sock}"],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (directory / "service.pid").write_text(str(service.pid))
    info = PodmanInfo(
        docker_host=env["DOCKER_HOST"], env=env, image=IMAGE, directory=directory, service_pid=service.pid
    )
    try:
        _wait_socket(sock, service.pid, time.monotonic() + 30)
    except BaseException:
        stop_podman(info)
        raise
    return info


def _conmon_pids(storage: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"conmon") and any(str(storage).encode() in a for a in argv):
                pids.append(int(entry.name))
    return pids


def stop_podman(info: PodmanInfo) -> None:
    """Stop ``info``'s containers, its API service and conmons, and unmount its storage.

    Only processes this instance started are signalled: the service by the pid it wrote, the
    ``conmon`` monitors by their storage directory. The directory itself is left in place.
    """
    directory = info.directory
    pid_file = directory / "service.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    break
            except ChildProcessError:  # not our child (another process started it): poll instead
                if not Path(f"/proc/{pid}").exists():
                    break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        pid_file.unlink(missing_ok=True)
    _podman(info.env, "rm", "--all", "--force", "--time", "0", timeout=120)
    storage = directory / "storage"
    # conmon of exec sessions lingers minutes after its container is gone
    for pid in _conmon_pids(storage):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)  # conmon's cleanup commands remount the storage on their way out
    for _ in range(20):
        with open("/proc/mounts") as mounts:
            mounted = [line.split()[1] for line in mounts if line.split()[1].startswith(str(storage))]
        if not mounted:
            break
        for point in sorted(mounted, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)
        time.sleep(0.2)


@pytest.fixture(scope="session")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanInfo]:
    """A private Podman for the test session (skips with the reason when it cannot run here)."""
    reason = podman_available()
    if reason is not None:
        pytest.skip(reason)
    info = start_podman(tmp_path_factory.mktemp("podman"))
    try:
        yield info
    finally:
        stop_podman(info)
