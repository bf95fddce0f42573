"""DxflowFile: one file of the store opened through fsspec.

Reads fetch byte ranges; writes are spooled (in memory up to `SPOOL_MEMORY`, then on
disk) and committed atomically when the file is closed.
"""

from __future__ import annotations

import tempfile
from typing import IO, TYPE_CHECKING

from fsspec.asyn import sync
from fsspec.spec import AbstractBufferedFile

if TYPE_CHECKING:
    from ._filesystem import DxflowFileSystem

__all__ = ["SPOOL_MEMORY", "DxflowFile"]

SPOOL_MEMORY = 16 << 20
"""A written file up to this size stays in memory and goes up in one request."""


class DxflowFile(AbstractBufferedFile):  # type: ignore[misc]
    """A file of the store: reads fetch byte ranges; writes are spooled and committed
    atomically at close (``"xb"`` refuses to replace a file, ``"ab"`` appends)."""

    fs: DxflowFileSystem

    def _initiate_upload(self) -> None:
        # closed by commit() or discard()
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115
        if self.mode == "ab" and self.fs.exists(self.path):
            self._copy_existing()

    def _copy_existing(self) -> None:
        offset, size = 0, self.fs.size(self.path)
        while offset < size:
            chunk = self.fs.cat_file(self.path, offset, min(offset + self.blocksize, size))
            if not chunk:
                break
            self._spool.write(chunk)
            offset += len(chunk)

    def _upload_chunk(self, final: bool = False) -> bool:
        self._spool.write(self.buffer.getbuffer())
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        try:
            sync(self.fs.loop, self.fs._upload, self._spool, self.path, self.mode != "xb")
        finally:
            self._spool.close()

    def discard(self) -> None:
        spool = getattr(self, "_spool", None)
        if spool is not None:
            spool.close()

    def _fetch_range(self, start: int, end: int) -> bytes:
        return bytes(self.fs.cat_file(self.path, start=start, end=end))
