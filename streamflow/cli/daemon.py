"""A warm runner process for ``streamflow-cwl-runner``.

A CWL runner is typically invoked once per workflow by test harnesses and pipelines
(cwltest runs hundreds of them), and most of a short run's time would go to starting
Python and importing the CWL stack. ``streamflow-cwl-runner`` therefore forwards its
command line to a *runner daemon* on the shared embedded bus (request/reply on
``sf.runner.exec``, queue group ``runners``), starting one if none answers. The daemon
runs each request through the same code path as an in-process run (``_cmd_run``), in a
small pool of threads (each with its own event loop and its own Node.js evaluator),
captures its stdout/stderr, and replies with them and the exit code. It exits after
``STREAMFLOW_RUNNER_IDLE`` seconds without requests (default 30), which also lets the
shared embedded server stop when nobody else uses it.

It is opt-in while it matures: set ``STREAMFLOW_RUNNER_DAEMON=1`` to use it (without it,
every invocation runs in-process).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

__all__ = ["SUBJECT", "forward", "serve"]

SUBJECT = "sf.runner.exec"
_local = threading.local()


class _ThreadStream(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` replacement writing to the current thread's buffer."""

    def __init__(self, name: str, fallback: TextIO | None) -> None:
        self.name = name
        self.fallback = fallback

    def write(self, text: str) -> int:
        buffer = getattr(_local, self.name, None)
        if buffer is None:
            return self.fallback.write(text) if self.fallback is not None else len(text)
        buffer.write(text)
        return len(text)

    def flush(self) -> None:
        return None

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        # Subprocesses (tools) inherit the daemon's own stream (null when detached).
        if self.fallback is None:
            raise io.UnsupportedOperation("fileno")
        return self.fallback.fileno()


def _absolute_args(argv: list[str], cwd: str) -> list[str]:
    """Make the paths of a runner command line absolute (the daemon has its own cwd)."""
    result = []
    for arg in argv:
        if arg.startswith(("--outdir=", "--workdir=")):
            key, value = arg.split("=", 1)
            result.append(f"{key}={os.path.join(cwd, value)}")
        elif not arg.startswith("-") and os.path.exists(os.path.join(cwd, arg.split("#")[0])):
            result.append(os.path.join(cwd, arg))
        else:
            result.append(arg)
    return result


def _run_one(argv: list[str]) -> dict[str, Any]:
    from streamflow.cli.main import cwl_runner_main

    _local.stdout, _local.stderr = io.StringIO(), io.StringIO()
    try:
        code = cwl_runner_main(argv, in_daemon=True)
    except SystemExit as exc:  # argparse errors
        code = int(exc.code) if isinstance(exc.code, int) else 2
    except Exception as exc:  # the daemon must answer whatever happens to one run
        print(f"streamflow: internal error: {exc!r}", file=sys.stderr)
        code = 1
    out, err = _local.stdout.getvalue(), _local.stderr.getvalue()
    _local.stdout = _local.stderr = None
    return {"code": code, "stdout": out, "stderr": err}


async def serve(idle: float) -> None:
    """Answer runner requests until ``idle`` seconds pass without one."""
    from streamflow.bus import BusOptions, open_bus

    sys.stdout = _ThreadStream("stdout", sys.__stdout__)
    sys.stderr = _ThreadStream("stderr", sys.__stderr__)
    # Warm the imports every run needs.
    import streamflow.cli.engine
    import streamflow.cwl.translator  # noqa: F401

    pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="runner")
    last = time.monotonic()
    active = 0
    loop = asyncio.get_running_loop()

    async def _handle(msg: Any) -> None:
        nonlocal last, active
        active += 1
        try:
            request = json.loads(msg.data)
            argv = _absolute_args(list(request["argv"]), request["cwd"])
            reply = await loop.run_in_executor(pool, _run_one, argv)
            await msg.respond(json.dumps(reply).encode())
        finally:
            active -= 1
            last = time.monotonic()

    async with open_bus(BusOptions(name="streamflow-runner-daemon")) as nc:
        tasks: set[asyncio.Task[None]] = set()

        async def _dispatch(msg: Any) -> None:
            task = loop.create_task(_handle(msg))  # requests run concurrently
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        sub = await nc.subscribe(SUBJECT, queue="runners", cb=_dispatch)
        await nc.flush()
        while active or time.monotonic() - last < idle:  # noqa: ASYNC110 - an idle timer, polled
            await asyncio.sleep(0.5)
        # Stop taking requests first; answer the ones already delivered, then leave.
        await sub.unsubscribe()
        await nc.flush()
        await asyncio.sleep(0.2)
        while active or tasks:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    pool.shutdown(wait=True)


def _spawn() -> None:
    subprocess.Popen(
        [sys.executable, "-m", "streamflow.cli.daemon"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True, env=dict(os.environ),
    )


async def _forward(argv: list[str]) -> dict[str, Any] | None:
    import nats
    import nats.errors

    from streamflow.bus import _shared_server_info, streamflow_home

    options, _ = await asyncio.to_thread(_shared_server_info, streamflow_home())
    nc = await nats.connect(servers=options.servers, token=options.token, connect_timeout=2,
                            max_reconnect_attempts=1, allow_reconnect=False)
    async def _presence(msg: Any) -> None:
        await msg.respond(b"here")

    # Keep the shared server alive while this client waits for its answer.
    await nc.subscribe("sf.presence", cb=_presence)
    try:
        payload = json.dumps({"argv": argv, "cwd": os.getcwd()}).encode()
        spawned = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                msg = await nc.request(SUBJECT, payload, timeout=24 * 3600)
                result: dict[str, Any] = json.loads(msg.data)
                return result
            except (nats.errors.ConnectionClosedError, nats.errors.TimeoutError):
                return None  # the daemon or the bus went away: run in-process instead
            except nats.errors.NoRespondersError:
                if not spawned:
                    _spawn()
                    spawned = True
                await asyncio.sleep(0.05)
        return None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def forward(argv: list[str]) -> int | None:
    """Run a ``streamflow-cwl-runner`` command line in the warm daemon.

    Returns:
        The exit code, or None when the daemon could not be reached (run in-process).
    """
    if os.environ.get("STREAMFLOW_RUNNER_DAEMON", "0") != "1" or os.environ.get("STREAMFLOW_NATS_URL"):
        return None
    if any(a in ("--version", "-h", "--help", "--validate") for a in argv):
        return None
    if not any(a == "--workdir" or a.startswith("--workdir=") for a in argv):
        import tempfile

        argv = [f"--workdir={os.path.join(tempfile.gettempdir(), 'streamflow-jobs')}", *argv]
    try:
        result = asyncio.run(_forward(argv))
    except Exception:  # no bus, no daemon: fall back to an in-process run
        return None
    if result is None:
        return None
    sys.stdout.write(result["stdout"])
    sys.stderr.write(result["stderr"])
    sys.stdout.flush()
    return int(result["code"])


if __name__ == "__main__":
    asyncio.run(serve(float(os.environ.get("STREAMFLOW_RUNNER_IDLE", "30"))))
