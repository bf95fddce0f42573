"""The storage quota: what the store holds, kept current without walking it on every write."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ..._exceptions import InsufficientStorage

__all__ = ["Quota", "tree_size"]


def tree_size(path: Path) -> int:
    """Bytes of the regular files under `path` (symlinks are not followed)."""
    if path.is_symlink() or not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += stat.st_size if not os.path.islink(os.path.join(folder, name)) else 0
    return total


class Quota:
    """Bytes the store may hold. `limit` None means no quota, and no bookkeeping."""

    def __init__(self, root: Path, limit: int | None) -> None:
        self.limit = limit
        self._root = root
        self._used: int | None = None
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            if self._used is None:  # walked once, lazily, then kept by `changed`
                self._used = tree_size(self._root)
            return self._used

    def check(self, adding: int, freeing: int = 0, path: str = "") -> None:
        """Raise InsufficientStorage when `adding` bytes (net of `freeing`) do not fit."""
        if self.limit is None:
            return
        if self.used + adding - freeing > self.limit:
            free = max(self.limit - self.used, 0)
            target = f" for {path!r}" if path else ""
            raise InsufficientStorage(
                f"storage quota exceeded{target}: {adding} bytes do not fit in the "
                f"{free} bytes left of the {self.limit}-byte quota",
                limit=self.limit,
                free=free,
            )

    def changed(self, delta: int) -> None:
        if self.limit is None:
            return
        with self._lock:
            if self._used is not None:
                self._used = max(self._used + delta, 0)
