"""The pidfd child watcher (Python 3.11, ``streamflow.deployment.execution``) reports true exit codes.

asyncio's ``Process.kill()``/``send_signal()`` go through ``Popen.send_signal``, which polls
the child first and so reaps it when it has already exited. A watcher that reaps later
(the pidfd one waits for the loop to see the pidfd readable) then finds no child: it must
still report the status that poll read, not 255.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

import pytest

from streamflow.deployment.execution import use_pidfd_child_watcher

pytestmark = pytest.mark.skipif(sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"),
                                reason="the pidfd watcher is only installed on Python 3.11 on Linux")


async def test_a_child_reaped_by_a_signal_call_keeps_its_exit_status() -> None:
    assert use_pidfd_child_watcher()
    process = await asyncio.create_subprocess_exec("sleep", "30")
    os.kill(process.pid, signal.SIGKILL)
    time.sleep(0.2)  # dead, but the loop has not seen its pidfd yet
    process.kill()  # Popen.send_signal polls first: the child is reaped here
    assert await asyncio.wait_for(process.wait(), 10) == -signal.SIGKILL


async def test_ordinary_exit_codes_are_reported() -> None:
    assert use_pidfd_child_watcher()
    codes = await asyncio.gather(*[
        (await asyncio.create_subprocess_exec("sh", "-c", f"exit {n}")).wait() for n in (0, 3, 7)])
    assert codes == [0, 3, 7]
