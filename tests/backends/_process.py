"""Process helpers shared by the back-end fixtures."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["gone"]


def gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie counts as exited: nobody may reap it here)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state == "Z"
