"""The transport interface: the only I/O seam between the SDK and an engine."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._models import Response
from .._operations import Operation
from .._pipe import read_in_thread
from .._wire import CHUNK

__all__ = ["Download", "FileSlice", "Progress", "Transport"]

Progress = Callable[[int, int | None], object] | None
"""Called with (bytes done, bytes in all) as a transfer goes."""


@dataclass(frozen=True)
class FileSlice:
    """An upload body that is `length` bytes of a local file from `offset`.

    Over HTTP it is sent from a worker thread with blocking writes, as downloads are
    received: no event loop turn per chunk. `progress(done, length)` follows the bytes
    (from that thread).
    """

    path: Path
    offset: int
    length: int
    progress: Callable[[int, int | None], object] | None = None

    def read(self) -> Generator[bytes, None, None]:
        """The bytes, in chunks of a few MiB (blocking reads)."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            done = 0
            while done < self.length:
                chunk = os.pread(fd, min(CHUNK, self.length - done), self.offset + done)
                if not chunk:
                    raise OSError(f"{self.path} shrank while it was being sent")
                done += len(chunk)
                if self.progress is not None:
                    self.progress(done, self.length)
                yield chunk
        finally:
            os.close(fd)


@dataclass
class Download:
    """The bytes of a download as they arrive, and what is known of them up front."""

    chunks: AsyncIterator[bytes]
    size: int | None
    """The length of what comes (None for a directory zipped on the fly)."""
    total: int | None
    """The whole file's size (a range is part of it)."""
    etag: str | None
    filename: str | None
    path: Path | None = None
    """In-process only: the file itself, so a copy can skip Python altogether."""
    start: int = 0


class Transport(ABC):
    """Carries one operation to an engine and brings back its typed result."""

    url: str | None = None
    """Where the engine is reached (None in-process)."""
    in_process = False
    """The engine runs in this process: files can be handed over by path."""

    @abstractmethod
    async def call(self, op: Operation, params: Mapping[str, Any]) -> Response: ...

    @abstractmethod
    def stream(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Response]: ...

    @abstractmethod
    def download(
        self, op: Operation, params: Mapping[str, Any]
    ) -> AbstractAsyncContextManager[Download]:
        """Open a download; `params` may carry `start` and `end` (a byte range)."""

    @abstractmethod
    async def upload(self, op: Operation, params: Mapping[str, Any], body: Any) -> Any:
        """Send `body` (bytes or an async iterable of bytes) with `params`."""

    async def get_file(
        self, op: Operation, params: Mapping[str, Any], target: Path, progress: Progress
    ) -> int:
        """Download into the local file `target` (created or truncated; written into,
        never replaced, when it is a FIFO or device); the byte count.

        Each transport picks its fastest way: in-process a kernel copy of the stored
        file, over HTTP blocking reads from a worker thread. The caller owns the temp
        file + rename dance; the transport only fills `target`.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot download to a file")

    async def put_file(
        self, op: Operation, params: Mapping[str, Any], source: Path, progress: Progress
    ) -> Response:
        """Upload the local file `source` with `params` (the `objects.write` operation);
        the stored object's info.

        In-process the store copies the file by path; over HTTP a small file goes in one
        request and a big one as a resumable tus upload, remembered across restarts.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot upload a file")

    def clone(self) -> Transport:
        """A new transport to the same engine as the same identity, sharing nothing that
        is bound to an event loop (fsspec opens one per loop)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be cloned")

    def bridged(self, name: str) -> Transport:
        """A transport to agent `name` of this engine (a master), through it."""
        raise NotImplementedError(f"{type(self).__name__} reaches no bridges")

    def channel(self, op: Operation, params: Mapping[str, Any]) -> AbstractAsyncContextManager[Any]:
        """Open a two-way channel: `messages()` gives bytes and control dicts, `deliver()`
        takes them (see docs/shells.md for the protocol)."""
        raise NotImplementedError(f"{type(self).__name__} has no channels")

    def can_inline(self, op: Operation) -> bool:
        """True when `call_inline` may run `op` on a blocking caller's thread."""
        return False

    def call_inline(self, op: Operation, params: Mapping[str, Any]) -> Response:
        raise NotImplementedError

    async def aclose(self) -> None:  # noqa: B027 - most transports hold nothing
        pass


async def as_chunks(body: Any) -> AsyncIterator[bytes]:
    """Bytes, a FileSlice or an async iterable of bytes, as an async iterator of bytes."""
    if isinstance(body, bytes | bytearray | memoryview):
        yield bytes(body)
        return
    if isinstance(body, FileSlice):
        async for chunk in read_in_thread(body.read()):
            yield chunk
        return
    assert isinstance(body, AsyncIterable)
    async for chunk in body:
        yield chunk
