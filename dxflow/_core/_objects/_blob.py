"""What a download hands to its door: a file range on disk, or bytes made on the fly."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..._models import ObjectInfo

__all__ = ["CHUNK", "Blob", "LocalFile", "read_range"]

CHUNK = 4 << 20
"""Big enough that per-chunk costs (a thread hop, an ASGI message) vanish next to the copy."""


@dataclass(frozen=True)
class LocalFile:
    """An upload body that is a file on this machine: in-process callers hand the path
    over and the store copies it in the kernel instead of streaming it through Python."""

    path: Path


@dataclass
class Blob:
    info: ObjectInfo
    filename: str
    media_type: str
    fd: int | None = None
    """An open file, served from `start` to `end`: opened when the request was checked,
    so the bytes sent are those of the file that was stat'ed, whatever happens to its
    name meanwhile. Closed once read, or when the blob is dropped unread (a HEAD, a 304)."""
    generate: Callable[[], Iterator[bytes]] | None = None
    """Bytes made on the fly (a directory as a zip); their size is unknown in advance."""
    folder_fd: int | None = None
    """A folder opened when the request was checked; `generate` streams from a copy of it."""
    start: int = 0
    end: int | None = None
    partial: bool = False
    """A range was asked for: over HTTP, a 206 with Content-Range."""
    claim: Callable[[], None] | None = None
    """Runs once, just before the bytes are sent (a share link counts a use there), so
    a HEAD or a 304 that sends none costs nothing; it may refuse by raising."""

    def claimed(self) -> None:
        """Run `claim`, once."""
        claim, self.claim = self.claim, None
        if claim is not None:
            claim()

    @property
    def path(self) -> Path | None:
        """In-process callers' name for the open file (a kernel copy opens it again):
        /proc/self/fd/N names the inode itself, never a path that could be swapped."""
        return None if self.fd is None else Path(f"/proc/self/fd/{self.fd}")

    def close(self) -> None:
        fd, self.fd = self.fd, None
        folder, self.folder_fd = self.folder_fd, None
        for each in (fd, folder):
            if each is not None:
                os.close(each)

    def __del__(self) -> None:
        self.close()

    @property
    def length(self) -> int | None:
        return None if self.end is None else self.end - self.start

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The bytes, in chunks (blocking reads: run it in a worker thread)."""
        self.claimed()
        if self.generate is not None:
            yield from self.generate()
            return
        assert self.fd is not None and self.end is not None
        try:
            yield from read_range(self.fd, self.start, self.end, size)
        finally:
            self.close()


def read_range(fd: int, start: int, end: int, size: int = CHUNK) -> Iterator[bytes]:
    offset = start
    while offset < end:
        data = os.pread(fd, min(size, end - offset), offset)
        if not data:  # the file shrank under us: stop rather than spin
            return
        offset += len(data)
        yield data
