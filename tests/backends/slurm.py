"""A real single-node Slurm for tests: start it, stop it, and a session fixture.

``start_slurm(dir)`` starts, by hand (no systemd, no cgroups, no accounting), a private
``munged`` (its own key and socket in ``dir``), ``slurmctld`` and ``slurmd`` on free ports, with
a ``slurm.conf`` written to ``dir``: one node ``localhost`` with this machine's CPUs, one
partition ``debug``, ``ProctrackType=proctrack/linuxproc``, ``TaskPlugin=task/none``,
``MinJobAge`` of a day (so ``scontrol show job`` keeps ended jobs) and immediate scheduling.
Clients find it through ``SLURM_CONF`` (``SlurmInfo.env``); with ``link_etc=True``
``/etc/slurm/slurm.conf`` is also a symbolic link to it, so that clients started where the
environment is not inherited (a plain ``ssh`` session) find it too. Everything the clients need
(the config, the munge socket) is in ``dir``, which is made world-traversable.

Only root can run it (the daemons run as root); the ``slurm`` fixture skips with a stated reason
when the Debian packages (``slurmctld slurmd slurm-client munge``) are missing or the tests do
not run as root. Nothing is left running: ``stop_slurm`` stops the daemons by the pids their
pid files recorded (after checking that each pid is still that daemon) and waits for them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.backends._process import gone as _gone

__all__ = ["ETC_SLURM_CONF", "SlurmInfo", "slurm", "slurm_skip_reason", "start_slurm", "stop_slurm"]

ETC_SLURM_CONF = "/etc/slurm/slurm.conf"
"""Where Slurm clients look for their configuration when ``SLURM_CONF`` is not set."""

_DAEMONS = {
    "munged": "/usr/sbin/munged",
    "slurmctld": "/usr/sbin/slurmctld",
    "slurmd": "/usr/sbin/slurmd",
}
_CLIENTS = ("sbatch", "scontrol", "scancel", "sinfo", "munge")


@dataclass(frozen=True)
class SlurmInfo:
    """A running test Slurm.

    Attributes:
        dir: the directory holding its config, key, sockets, state, pid files and logs (``log/``).
        conf: path of its ``slurm.conf``.
        munge_socket: path of its munged socket (named in ``slurm.conf`` as ``AuthInfo``).
        partition: the only partition (the default one).
        node: the only node's name.
        cpus: CPUs of the node.
        controller_port: the port slurmctld listens on (127.0.0.1).
        node_port: the port slurmd listens on.
        linked_etc: whether ``/etc/slurm/slurm.conf`` links to ``conf``.
        previous_etc_link: where ``/etc/slurm/slurm.conf`` linked before (another test Slurm's
            config), restored by :func:`stop_slurm`; ``None`` if there was no link.
    """

    dir: str
    conf: str
    munge_socket: str
    partition: str
    node: str
    cpus: int
    controller_port: int
    node_port: int
    linked_etc: bool = False
    previous_etc_link: str | None = None

    @property
    def env(self) -> dict[str, str]:
        """Environment variables a client needs: ``{"SLURM_CONF": conf}``."""
        return {"SLURM_CONF": self.conf}

    def pid_file(self, daemon: str) -> str:
        """The pid file of ``daemon`` (``munged``, ``slurmctld`` or ``slurmd``)."""
        return os.path.join(self.dir, f"{daemon}.pid")

    def log_file(self, daemon: str) -> str:
        """The log of ``daemon``."""
        return os.path.join(self.dir, "log", f"{daemon}.log")

    def client_env(self) -> dict[str, str]:
        """This process's environment plus :attr:`env`, for client subprocesses."""
        return {**os.environ, **self.env}


def slurm_skip_reason() -> str | None:
    """Why a test Slurm cannot be started here, or ``None`` if it can."""
    for name, path in _DAEMONS.items():
        if not os.path.exists(path):
            return f"{path} is not installed (Debian packages slurmctld slurmd slurm-client munge): no {name}"
    for client in _CLIENTS:
        if shutil.which(client) is None:
            return f"{client} is not installed (Debian packages slurm-client munge)"
    if os.geteuid() != 0:
        return "the test Slurm must run as root (slurmd runs jobs as their users)"
    return None


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _read_pid(path: str) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def _is_daemon(pid: int, daemon: str) -> bool:
    """Whether ``pid`` still runs ``daemon`` (a recycled pid is never signalled)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
    except OSError:
        return False
    return os.path.basename(argv0) == daemon


def _write_conf(root: Path, ports: list[int], cpus: int, memory_mb: int) -> Path:
    conf = root / "slurm.conf"
    lines = [
        "ClusterName=sftest",
        "SlurmctldHost=localhost(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge.socket'}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}/%n",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "JobCompType=jobcomp/none",
        "SchedulerType=sched/builtin",
        "SchedulerParameters=sched_min_interval=0,batch_sched_delay=0",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core",
        "MpiDefault=none",
        "ReturnToService=2",
        "MinJobAge=86400",
        "InactiveLimit=0",
        "KillWait=2",
        f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        "PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP",
    ]
    conf.write_text("\n".join(lines) + "\n")
    conf.chmod(0o644)
    return conf


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(1, int(int(line.split()[1]) / 1024 * 0.9))
    return 1024


def _link_etc(conf: Path) -> str | None:
    """Point ``/etc/slurm/slurm.conf`` at ``conf``; return where it pointed before (if a link)."""
    etc = Path(ETC_SLURM_CONF)
    if etc.exists() and not etc.is_symlink():
        raise RuntimeError(f"{etc} exists and is not a link made by a test Slurm: not replacing it")
    previous = os.readlink(etc) if etc.is_symlink() else None
    _point_etc(str(conf))
    return previous


def _point_etc(target: str) -> None:
    etc = Path(ETC_SLURM_CONF)
    etc.parent.mkdir(parents=True, exist_ok=True)
    tmp = etc.with_name(f".slurm.conf.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(target)
    tmp.replace(etc)


def _logs(root: Path) -> str:
    tails = []
    for name in ("munged", "slurmctld", "slurmd"):
        path = root / "log" / f"{name}.log"
        with contextlib.suppress(OSError):
            tails.append(f"--- {name}.log\n" + "\n".join(path.read_text().splitlines()[-15:]))
    return "\n".join(tails)


def _start_daemon(argv: list[str], env: dict[str, str], timeout: float) -> None:
    """Run a self-daemonizing daemon's start command; it returns once the daemon forked."""
    subprocess.run(
        argv,
        check=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def start_slurm(dir: str | os.PathLike[str], link_etc: bool = False, timeout: float = 30.0) -> SlurmInfo:
    """Start munged, slurmctld and slurmd with their configuration, state and logs in ``dir``.

    Args:
        dir: a directory for their files (created, and made world-traversable, mode 0755,
            because clients connect to the munge socket in it); must not be hidden from the
            sessions that submit jobs (e.g. an sshd's ``hide`` paths).
        link_etc: also make ``/etc/slurm/slurm.conf`` a link to this config (replacing a link
            made by another test Slurm, never a regular file), for clients that do not inherit
            ``SLURM_CONF`` (``ssh`` sessions); ``stop_slurm`` puts back the link it replaced if
            that Slurm's config is still there, else removes the link.
        timeout: seconds to wait for the node to become idle.

    Returns:
        What clients need to reach it.

    Raises:
        RuntimeError: if a daemon is missing or did not come up (the logs' tails are in the message).
    """
    if (reason := slurm_skip_reason()) is not None:
        raise RuntimeError(reason)
    root = Path(dir).resolve()
    for sub in ("state", "spool/localhost", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    key = root / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(128))
    key.chmod(0o400)
    ports = _free_ports(2)
    cpus = os.cpu_count() or 1
    conf = _write_conf(root, ports, cpus, _memory_mb())
    info = SlurmInfo(
        dir=str(root),
        conf=str(conf),
        munge_socket=str(root / "munge.socket"),
        partition="debug",
        node="localhost",
        cpus=cpus,
        controller_port=ports[0],
        node_port=ports[1],
        linked_etc=link_etc,
    )
    env = info.client_env()
    try:
        _start_daemon(
            [
                _DAEMONS["munged"],
                "--force",
                f"--socket={info.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={info.pid_file('munged')}",
                f"--log-file={info.log_file('munged')}",
                f"--seed-file={root / 'munged.seed'}",
            ],
            env,
            timeout,
        )
        _start_daemon([_DAEMONS["slurmctld"], "-c"], env, timeout)
        _start_daemon([_DAEMONS["slurmd"], "-N", info.node], env, timeout)
        if link_etc:
            info = dataclasses.replace(info, previous_etc_link=_link_etc(conf))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True, timeout=timeout
            ).stdout.strip()
            if state == "idle":
                return info
            time.sleep(0.2)
        raise RuntimeError(f"the test Slurm did not come up in {timeout} s\n{_logs(root)}")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError, RuntimeError) as exc:
        stop_slurm(info)
        stderr = getattr(exc, "stderr", None)
        detail = stderr.decode(errors="replace") if isinstance(stderr, bytes) else ""
        raise RuntimeError(f"cannot start the test Slurm: {exc} {detail}\n{_logs(root)}") from exc


def stop_slurm(info: SlurmInfo, timeout: float = 15.0) -> None:
    """Stop the daemons ``info`` started (slurmd, slurmctld, munged) and wait for them to exit.

    Jobs still in the queue are cancelled first (slurmd does not take its jobs down with it),
    and any ``slurmstepd`` of this cluster that outlives slurmd is killed with its job processes.
    Each daemon is signalled (SIGTERM, then SIGKILL after ``timeout``) by the pid its pid file
    holds, only if that pid still runs that daemon. The ``/etc/slurm/slurm.conf`` link is removed
    if it still points to ``info.conf``. Idempotent.
    """
    _cancel_all_jobs(info)
    if info.linked_etc:
        etc = Path(ETC_SLURM_CONF)
        if etc.is_symlink() and os.readlink(etc) == info.conf:
            previous = info.previous_etc_link
            if previous is not None and previous != info.conf and os.path.exists(previous):
                _point_etc(previous)  # another test Slurm still running linked it first
            else:
                with contextlib.suppress(FileNotFoundError):
                    etc.unlink()
    for daemon in ("slurmd", "slurmctld", "munged"):
        pid = _read_pid(info.pid_file(daemon))
        if pid is None or _gone(pid) or not _is_daemon(pid, daemon):
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if not _gone(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while not _gone(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
    _kill_leftover_steps(info)


def _cancel_all_jobs(info: SlurmInfo, timeout: float = 10.0) -> None:
    """Cancel every job of this cluster and wait for them to end (slurmd does not kill them on exit)."""
    pid = _read_pid(info.pid_file("slurmctld"))
    if pid is None or _gone(pid) or not _is_daemon(pid, "slurmctld"):
        return
    env = info.client_env()
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        subprocess.run(
            ["scancel", f"--partition={info.partition}"], env=env, capture_output=True, timeout=timeout
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            active = subprocess.run(
                ["squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING,SUSPENDED,CONFIGURING"],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            if active.returncode == 0 and not active.stdout.strip():
                return
            time.sleep(0.2)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _kill_leftover_steps(info: SlurmInfo) -> None:
    """SIGKILL the slurmstepd processes of this cluster (found by SLURM_CONF in their environment)
    that outlived slurmd, with the job processes under them."""
    marker = f"SLURM_CONF={info.conf}".encode()
    tree = _children()
    victims: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if not (entry / "cmdline").read_bytes().startswith(b"slurmstepd"):
                continue
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            stack = [int(entry.name)]
            while stack:
                pid = stack.pop()
                victims.append(pid)
                stack.extend(tree.get(pid, []))
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmInfo]:
    """A running test Slurm for the session, with ``SLURM_CONF`` set in this process's environment.

    ``SLURM_CONF`` is set (and restored at the end) so that connectors running commands on this
    machine find the cluster; ``/etc/slurm`` is not touched (use :func:`start_slurm` with
    ``link_etc=True`` for clients reached over ssh). Skips with the reason when Slurm cannot run here.
    """
    if (reason := slurm_skip_reason()) is not None:
        pytest.skip(reason)
    info = start_slurm(tmp_path_factory.mktemp("slurm"))
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = info.conf
    try:
        yield info
    finally:
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
        stop_slurm(info)
