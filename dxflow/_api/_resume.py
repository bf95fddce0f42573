"""Unfinished resumable uploads, remembered on disk so that a restarted client goes on
with them instead of starting again.

A record names the engine, the local file (path, size, modification time) and the
destination; it holds the engine's upload id and nothing secret. Records live in
`$XDG_CACHE_HOME/dxflow/uploads` (`~/.cache/dxflow/uploads`), one 0600 file each.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

__all__ = ["forget", "recall", "remember", "upload_key"]


def _folder() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(cache) / "dxflow" / "uploads"


def upload_key(engine: str, source: Path, destination: str) -> str:
    stat = source.stat()
    what = [engine, str(source.resolve()), stat.st_size, stat.st_mtime_ns, destination]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:32]


def recall(key: str) -> str | None:
    try:
        return str(json.loads((_folder() / key).read_text())["upload"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(key: str, upload: str) -> None:
    try:
        folder = _folder()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(folder / key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"upload": upload}, out)
    except OSError:
        pass  # no cache to write to: the upload still resumes within this process


def forget(key: str) -> None:
    (_folder() / key).unlink(missing_ok=True)
