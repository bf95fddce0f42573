"""The storage quota: what the store holds, kept current without walking it on every write."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable

from ..._exceptions import InsufficientStorage

__all__ = ["Quota", "tree_size"]


def tree_size(dir_fd: int, name: str | None = None) -> int:
    """Bytes of the regular files at `name` in `dir_fd` (or under `dir_fd` itself).

    os.fwalk goes by fds and never follows a link, so a folder swapped for a symlink
    mid-walk is not counted (nor entered) rather than counted from outside the root.
    """
    try:
        st = os.stat(name if name is not None else ".", dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if stat.S_ISREG(st.st_mode):
        return st.st_size
    if not stat.S_ISDIR(st.st_mode):
        return 0
    total = 0
    for _, _, files, fd in os.fwalk(name or ".", dir_fd=dir_fd, follow_symlinks=False):
        for file in files:
            try:
                entry = os.stat(file, dir_fd=fd, follow_symlinks=False)
            except OSError:
                continue
            total += entry.st_size if stat.S_ISREG(entry.st_mode) else 0
    return total


class Quota:
    """Bytes the store may hold. `limit` None means no quota, and no bookkeeping.

    Everything under the root counts: committed files, temp files being written, partial
    resumable uploads and archives being built (the private folder included).
    """

    def __init__(self, open_root: Callable[[], int], limit: int | None) -> None:
        self.limit = limit
        self._open_root = open_root
        self._used: int | None = None
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        with self._lock:
            return self._current()

    def _current(self) -> int:
        if self._used is None:  # walked once, lazily, then kept by `changed`
            fd = self._open_root()
            try:
                self._used = tree_size(fd)
            finally:
                os.close(fd)
        return self._used

    def _refuse(self, used: int, adding: int, path: str) -> InsufficientStorage:
        assert self.limit is not None
        free = max(self.limit - used, 0)
        target = f" for {path!r}" if path else ""
        return InsufficientStorage(
            f"storage quota exceeded{target}: {adding} bytes do not fit in the "
            f"{free} bytes left of the {self.limit}-byte quota",
            limit=self.limit,
            free=free,
        )

    def check(self, adding: int, freeing: int = 0, path: str = "") -> None:
        """Raise InsufficientStorage when `adding` bytes (net of `freeing`) do not fit."""
        if self.limit is None:
            return
        used = self.used
        if used + adding - freeing > self.limit:
            raise self._refuse(used, adding, path)

    def reserve(self, adding: int, path: str = "") -> None:
        """Count `adding` bytes about to be written, or raise if they do not fit (one
        step under the lock: two writers cannot both take the last free bytes)."""
        if self.limit is None or adding <= 0:
            self.changed(adding)
            return
        with self._lock:
            used = self._current()
            if used + adding > self.limit:
                raise self._refuse(used, adding, path)
            self._used = used + adding

    def changed(self, delta: int) -> None:
        if self.limit is None:
            return
        with self._lock:
            if self._used is not None:
                self._used = max(self._used + delta, 0)
