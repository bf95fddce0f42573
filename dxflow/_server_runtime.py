"""Where a booted engine is: its pid and runtime files in the home.

Read by the CLI (`boot down`, `boot status`) without importing the server.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ._config import Home

__all__ = ["read_runtime", "running_pid"]


def running_pid(home: Home) -> int | None:
    """The pid of the engine serving `home`, or None (stale files are ignored)."""
    try:
        pid = int(home.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return None if _zombie(pid) else pid


def _zombie(pid: int) -> bool:
    """A killed engine whose parent has not reaped it (a container's init may never):
    it holds its pid, but it serves nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def read_runtime(home: Home) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(home.runtime_file.read_text())
    except (OSError, ValueError):
        return None
    return data if running_pid(home) == data.get("pid") else None
