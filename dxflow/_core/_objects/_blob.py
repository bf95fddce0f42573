"""What a download hands to its door: a file range on disk, or bytes made on the fly."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..._exceptions import ApiError, NotFound
from ..._models import ObjectInfo
from ..._wire import CHUNK, ByteRange
from ._walker import unreadable

__all__ = ["Blob", "LocalFile", "read_range"]

_GONE = (errno.ENOENT, errno.ESTALE, errno.ENOTDIR)


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
    translate: Callable[[Exception], ApiError] | None = None
    """The dispatcher's translation of a stray error, set when it hands the blob out:
    the reads come after the handler returned, and must fail as the handler would."""

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

    @property
    def span(self) -> ByteRange:
        return ByteRange(self.start, self.end)

    def select(self, span: ByteRange | None) -> None:
        """Serve `span` of the file (clamped to its size), or all of it (None)."""
        size = self.info.size
        if span is None:
            self.start, self.end, self.partial = 0, size, False
        else:
            end = size if span.end is None else min(span.end, size)
            self.start, self.end, self.partial = min(span.start, size), end, True

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """The bytes, in chunks (blocking reads: run it in a worker thread).

        A failure comes as an error of the tree, as if the handler had raised it: a file
        gone under the read is `NotFound`, one the engine may not read `PermissionDenied`,
        anything else what the dispatcher makes of it (`translate`).
        """
        try:
            self.claimed()
            if self.generate is not None:
                yield from self.generate()
                return
            assert self.fd is not None and self.end is not None
            yield from read_range(self.fd, self.start, self.end, size)
        except ApiError:
            raise
        except Exception as exc:
            raise self._translated(exc) from None
        finally:
            self.close()

    def _translated(self, exc: Exception) -> Exception:
        path = self.info.path
        if isinstance(exc, OSError) and exc.errno in _GONE:
            return NotFound(f"{path!r} was removed while it was read", path=path)
        if isinstance(exc, PermissionError):
            return unreadable(path, path)
        return exc if self.translate is None else self.translate(exc)


def read_range(fd: int, start: int, end: int, size: int = CHUNK) -> Iterator[bytes]:
    offset = start
    while offset < end:
        data = os.pread(fd, min(size, end - offset), offset)
        if not data:  # the file shrank under us: stop rather than spin
            return
        offset += len(data)
        yield data
