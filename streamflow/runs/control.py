"""Cancel, resume and rerun a recorded run: what ``streamflow cancel`` and the UI's buttons do.

:func:`cancel_run` asks the run's supervisor (the process holding the run's lease) on
``sf.ctl.<run>.cancel`` to record ``RunCancelled`` and stop its jobs: ``wf`` has one
writer. When no process hosts the run (it crashed), the caller becomes that writer: it
takes the run's lease (refused while a live process holds it), writes its fence and
records ``RunCancelled`` fenced, then gives the lease back. An unknown run is refused and
nothing is written.

:func:`start_resume` and :func:`start_rerun` start ``streamflow resume``/``rerun`` as
detached processes on the same bus; the bus credentials travel in their environment,
never on their command line.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from events.lease import acquire_lease, lease_key, write_fence
from events.log import EventLog, run_subject, valid_id
from events.projections import TERMINAL, RunSummary
from events.schema import RunCancelled
from streamflow.bus import BusOptions
from streamflow.errors import LeaseError

__all__ = ["ActionResult", "bus_environment", "cancel_run", "new_run_id", "start_rerun", "start_resume"]


@dataclass(frozen=True)
class ActionResult:
    """The outcome of an action.

    Attributes:
        ok: whether it was done (or was already done).
        message: what happened, for a person.
        code: the exit code the CLI returns (0 done, 1 failed, 2 invalid or unknown run).
        pid: the started process, for resume and rerun.
        run_id: the new run, for rerun.
    """

    ok: bool
    message: str
    code: int = 0
    pid: int | None = None
    run_id: str | None = None


async def cancel_run(log_: EventLog, run_id: str, reason: str = "cancelled by user") -> ActionResult:
    """Cancel a run; it stays resumable (see the module's docstring)."""
    if not valid_id(run_id):
        return ActionResult(False, f"invalid run id {run_id[:140]!r}", 2)
    if not await log_.exists(run_id):  # nothing is written for a run that does not exist
        return ActionResult(False, f"no run {run_id!r} in the event log", 2)
    summary = RunSummary(run_id=run_id)
    async for record in log_.read(run_id, subject_filter=run_subject(run_id, "wf")):
        summary.apply(record)
    if summary.status in TERMINAL:
        return ActionResult(True, f"run {run_id} is already {summary.status}", 0)
    try:
        await log_.nc.request(f"sf.ctl.{run_id}.cancel", reason.encode(), timeout=5)
        return ActionResult(True, f"run {run_id} cancelled", 0)
    except Exception:  # no live supervisor answers: become it, under the run's lease
        pass
    try:
        lease = await acquire_lease(log_.js, lease_key(run_id, "supervisor"))
    except LeaseError as exc:
        return ActionResult(False, f"run {run_id} did not answer the cancel request: {exc}", 1)
    try:
        fence = await write_fence(log_, run_id, "supervisor", lease)
        await log_.append(run_id, "wf", None, RunCancelled(reason=reason), producer="run",
                          key=f"final/{summary.resumed}", fence=fence)
    finally:
        await lease.release()
    return ActionResult(True, f"run {run_id} cancelled (no live process)", 0)


def new_run_id() -> str:
    """A fresh run id (as ``streamflow run`` makes them)."""
    import secrets

    return "r" + secrets.token_hex(6)


def bus_environment(bus: BusOptions) -> dict[str, str]:
    """The ``STREAMFLOW_NATS_*`` variables that make a child process use ``bus``.

    An embedded bus (no servers) needs none: the child joins the shared embedded server of
    the same ``$STREAMFLOW_HOME``.
    """
    env: dict[str, str] = {}
    values = {
        "URL": ",".join(bus.servers), "TOKEN": bus.token, "USER": bus.user, "PASSWORD": bus.password,
        "CREDS": bus.creds, "NKEY": bus.nkey, "TLS_CA": bus.tls_ca, "TLS_CERT": bus.tls_cert,
        "TLS_KEY": bus.tls_key,
    }
    for key, value in values.items():
        if value:
            env[f"STREAMFLOW_NATS_{key}"] = value
    return env


async def _start(args: list[str], bus: BusOptions, log_file: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMFLOW_NATS_")}
    env.update(bus_environment(bus))
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "streamflow", *args, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
            env=env, start_new_session=True)


async def start_resume(log_: EventLog, run_id: str, bus: BusOptions, log_dir: Path
                       ) -> tuple[ActionResult, asyncio.subprocess.Process | None]:
    """Start ``streamflow resume RUN --quiet`` detached; its output goes to
    ``log_dir/<run>.resume.log``. The caller waits for (reaps) the returned process."""
    if not valid_id(run_id):
        return ActionResult(False, f"invalid run id {run_id[:140]!r}", 2), None
    if not await log_.exists(run_id):
        return ActionResult(False, f"no run {run_id!r} in the event log", 2), None
    proc = await _start(["resume", run_id, "--quiet"], bus, log_dir / f"{run_id}.resume.log")
    return ActionResult(True, f"resuming run {run_id} (pid {proc.pid})", 0, pid=proc.pid), proc


async def start_rerun(log_: EventLog, run_id: str, bus: BusOptions, log_dir: Path
                      ) -> tuple[ActionResult, asyncio.subprocess.Process | None]:
    """Start ``streamflow rerun RUN --run-id NEW --quiet`` detached (``NEW`` chosen here and
    returned); its output goes to ``log_dir/<NEW>.rerun.log``."""
    if not valid_id(run_id):
        return ActionResult(False, f"invalid run id {run_id[:140]!r}", 2), None
    if not await log_.exists(run_id):
        return ActionResult(False, f"no run {run_id!r} in the event log", 2), None
    new = new_run_id()
    proc = await _start(["rerun", run_id, "--run-id", new, "--quiet"], bus, log_dir / f"{new}.rerun.log")
    return ActionResult(True, f"run {new} started (rerun of {run_id}, pid {proc.pid})", 0, pid=proc.pid,
                        run_id=new), proc
