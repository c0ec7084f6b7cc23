"""The run supervisor: the writer of the run aggregate (``sf.ev.<run>.wf``).

It follows every step's termination and failure and the workflow's output ports. When a
step fails it records ``RunFailed``; when every step has terminated it collects the output
object (the tag ``"0"`` token of each output port), delivers the output files to the
output directory and records ``RunCompleted`` with the delivered object. Either way it
sets ``done``, which tells the host to shut down.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import structlog

from actors._runtime import Actor, RunContext
from events.log import Record
from events.schema import (
    DeploymentFailed,
    PortTerminated,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunResumed,
    StagingFailed,
    StepFailed,
    StepTerminated,
    TokenEmitted,
)
from streamflow.data.objectstore import fetch_missing

__all__ = ["RunSupervisor", "RunWatcher", "deliver_outputs"]

log = structlog.get_logger("streamflow.run")


class RunSupervisor(Actor):
    """Decides when the run is over and records how it ended.

    Args:
        ctx: the run context.
        done: set once the run has a final state in the log.
    """

    SNAPSHOT: ClassVar[dict[str, Any]] = {
        "outputs": dict[str, Any],
        "terminated_steps": set[str],
        "failure": StepFailed | None,
        "failed_step": str | None,
        "last_seq": int,
    }

    def __init__(self, ctx: RunContext, done: asyncio.Event) -> None:
        super().__init__(ctx, "run")
        self.done_event = done
        graph = ctx.graph
        self.subject = f"sf.ev.{ctx.run_id}.wf"
        self.step_ids = set(graph.steps)
        self.output_ports = {f"sf.ev.{ctx.run_id}.port.{pid}": name for name, pid in graph.outputs.items()}
        self.outputs: dict[str, Any] = {}
        self.terminated_steps: set[str] = set()
        self.failure: StepFailed | None = None
        self.failed_step: str | None = None
        self.final: RunCompleted | RunFailed | RunCancelled | None = None
        self.cancel_reason: str | None = None
        self.last_seq = 0

    def interested(self, record: Record) -> bool:
        return (record.subject == self.subject or record.aggregate in ("step", "deploy", "data")
                or record.subject in self.output_ports)

    def apply(self, record: Record) -> None:
        body = record.body
        if record.subject == self.subject:
            self.last_seq = max(self.last_seq, record.stream_seq)
            if isinstance(body, RunCompleted | RunFailed | RunCancelled):
                self.final = body
            elif isinstance(body, RunResumed):
                self.final = None  # a cancelled (or crashed) run carries on
            return
        if isinstance(body, StepTerminated):
            self.terminated_steps.add(record.agg_id or "")
        elif isinstance(body, StepFailed) and self.failure is None:
            self.failure = body
            self.failed_step = record.agg_id
        elif isinstance(body, StagingFailed) and self.failure is None:
            self.failure = StepFailed(error=f"cannot send the inputs of job {body.job} to "
                                      f"{body.deployment}/{body.location}: {body.error}", job=body.job,
                                      error_type="TransferError")
        elif (isinstance(body, DeploymentFailed) and self.failure is None
              and body.generation == self.ctx.settings.get("generation", 0)):
            # Its jobs could never be placed: the run cannot finish.
            self.failure = StepFailed(error=f"deployment {body.deployment!r} could not be deployed: {body.error}",
                                      error_type="DeploymentError")
        elif isinstance(body, TokenEmitted) and body.tag == "0":
            self.outputs[self.output_ports[record.subject]] = body.value
        elif isinstance(body, PortTerminated):
            pass

    @property
    def done(self) -> bool:
        return self.final is not None

    async def start(self) -> None:
        self._sub = await self.ctx.nc.subscribe(f"sf.ctl.{self.ctx.run_id}.cancel", cb=self._on_cancel)

    async def stop(self) -> None:
        sub = getattr(self, "_sub", None)
        if sub is not None:
            await sub.unsubscribe()

    async def _on_cancel(self, msg: Any) -> None:
        reason = msg.data.decode(errors="replace") or "cancelled by request"
        if self.final is None:
            self.cancel_reason = reason
            self.wake()
        await msg.respond(b"ok")

    async def react(self) -> None:
        if self.final is not None:
            self.done_event.set()
            return
        if self.cancel_reason is not None:
            await self._finish(RunCancelled(reason=self.cancel_reason))
            return
        if self.failure is not None:
            step = self.ctx.graph.steps.get(self.failed_step or "")
            event = RunFailed(error=self.failure.error, step=step.name if step else self.failed_step,
                              error_type=self.failure.error_type)
            await self._finish(event)
            return
        if self.terminated_steps >= self.step_ids:
            outputs = {name: self.outputs.get(name) for name in self.ctx.graph.outputs}
            from streamflow.cwl.outputs import validate_workflow_outputs

            problem = validate_workflow_outputs(outputs, self.ctx.graph.output_types)
            if problem is not None:
                await self._finish(RunFailed(error=problem, error_type="WorkflowExecutionError"))
                return
            await fetch_missing(self.ctx.log.js, outputs)  # produced where this machine cannot see
            delivered = await asyncio.to_thread(deliver_outputs, outputs, self.ctx.outdir)
            await self._finish(RunCompleted(outputs=delivered))

    async def _finish(self, event: RunCompleted | RunFailed | RunCancelled) -> None:
        await self.append("wf", None, event, key=f"final/{self.ctx.settings.get('generation', 0)}")
        self.final = event
        self.done_event.set()

    async def cancel(self, reason: str) -> None:
        """Record that the run was cancelled (Ctrl-C, ``streamflow cancel``)."""
        if self.final is None:
            await self._finish(RunCancelled(reason=reason))


class RunWatcher(Actor):
    """Follows the run aggregate only, for hosts that do not host the supervisor.

    It sets ``done`` once the run has a final event (not followed by ``RunResumed``). It
    writes nothing, belongs to no group and reads the run aggregate itself on start, so a
    host restoring its groups' snapshots need not read the log from the start for it.
    """

    SELF_INITIALISING: ClassVar[bool] = True

    def __init__(self, ctx: RunContext, done: asyncio.Event) -> None:
        super().__init__(ctx, "run-watcher")
        self.done_event = done
        self.subject = f"sf.ev.{ctx.run_id}.wf"
        self.final: RunCompleted | RunFailed | RunCancelled | None = None

    def interested(self, record: Record) -> bool:
        return record.subject == self.subject

    async def start(self) -> None:
        # Folding a wf event twice is harmless: the last one read decides.
        async for record in self.ctx.log.read(self.ctx.run_id, subject_filter=self.subject):
            self.apply(record)

    def apply(self, record: Record) -> None:
        body = record.body
        if isinstance(body, RunCompleted | RunFailed | RunCancelled):
            self.final = body
        elif isinstance(body, RunResumed):
            self.final = None

    async def react(self) -> None:
        if self.final is not None:
            self.done_event.set()


def _unique(target: Path, taken: set[str]) -> Path:
    candidate = target
    n = 2
    while str(candidate) in taken or candidate.exists():
        candidate = target.with_name(f"{target.stem}_{n}{target.suffix}")
        n += 1
    taken.add(str(candidate))
    return candidate


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha1${digest.hexdigest()}"


def _place(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        shutil.copytree(src, dst, symlinks=False, dirs_exist_ok=True)
        return
    # Always a copy, never a hard link: a delivered file must not share its inode with a
    # job directory, where a straggling process (or a later job) could still change it.
    _copy_file(Path(os.path.realpath(src)), dst)


def _copy_file(src: Path, dst: Path) -> None:
    """Copy ``src`` to the new file ``dst`` (``O_EXCL | O_NOFOLLOW``: never through a link)."""
    executable = os.stat(src).st_mode & 0o111
    with src.open("rb") as source:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o777 if executable else 0o666)  # the user's umask applies
        with os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
    info = os.stat(src)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))


def _relocate(value: Any, outdir: Path, taken: set[str], parent: Path | None = None,
              placed: dict[tuple[str, str], Path] | None = None) -> Any:
    if placed is None:
        placed = {}
    if isinstance(value, list):
        return [_relocate(v, outdir, taken, parent, placed) for v in value]
    if not isinstance(value, dict):
        return value
    cls = value.get("class")
    if cls not in ("File", "Directory"):
        return {k: _relocate(v, outdir, taken, parent, placed) for k, v in value.items()}
    result = dict(value)
    src_path = value.get("path")
    if not src_path and str(value.get("location", "")).startswith("file://"):
        from urllib.parse import unquote, urlparse

        src_path = unquote(urlparse(value["location"]).path)
    if not src_path:
        return result  # a literal (no file behind it): nothing to move
    src = Path(src_path)
    basename = value.get("basename") or src.name
    if parent is None:
        # The same file reached through several outputs is delivered once, under one name.
        key = (os.path.realpath(src), str(basename))
        known = placed.get(key)
        if known is None:
            dst = _unique(outdir / basename, taken)
            _place(src, dst)
            placed[key] = dst
        else:
            dst = known
    else:
        dst = parent / basename
    result["path"] = str(dst)
    result["location"] = dst.as_uri()
    result["basename"] = dst.name
    result.pop("dirname", None)
    if cls == "File":
        result["nameroot"], result["nameext"] = os.path.splitext(dst.name)
    if cls == "File":
        if dst.exists():
            result["size"] = dst.stat().st_size
            result["checksum"] = value.get("checksum") or _sha1(dst)
        if value.get("secondaryFiles"):
            secondaries = []
            for sec in value["secondaryFiles"]:
                sec_src = sec.get("path")
                if parent is None and sec_src:
                    sec_dst = dst.parent / (sec.get("basename") or Path(sec_src).name)
                    if not sec_dst.exists():
                        _place(Path(sec_src), sec_dst)
                    secondaries.append(_relocate(sec, outdir, taken, dst.parent))
                else:
                    secondaries.append(_relocate(sec, outdir, taken, dst.parent))
            result["secondaryFiles"] = secondaries
    elif value.get("listing") is not None:
        result["listing"] = [_relocate(item, outdir, taken, dst) for item in value["listing"]]
    return result


def deliver_outputs(outputs: dict[str, Any], outdir: str) -> dict[str, Any]:
    """Copy every output file into ``outdir`` (copies, never hard links); rewrite locations."""
    target = Path(outdir)
    target.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    result: dict[str, Any] = _relocate(outputs, target, taken)
    return result
