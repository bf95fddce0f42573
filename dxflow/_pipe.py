"""Streaming bytes into a file at disk speed: batched, and overlapped with the network.

Both ends of a transfer use it: the engine receiving an upload and the SDK receiving
a download. Chunks arrive in pieces of 64 KiB to 1 MiB; they are gathered into blocks
of a few MiB and written with one `writev` in a worker thread, while the next block is
being received. So the socket never waits for the disk, no byte is copied to join
chunks, and the event loop never blocks on a write.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator

import anyio

from ._wire import CHUNK

__all__ = ["read_in_thread", "write_stream"]

_IOV_MAX = 1024  # writev takes at most this many buffers (Linux's IOV_MAX)


def _writev(fd: int, chunks: list[bytes], digest: object) -> None:
    if digest is not None:
        for chunk in chunks:
            digest.update(chunk)  # type: ignore[attr-defined]
    views = [memoryview(chunk) for chunk in chunks]
    while views:
        written = os.writev(fd, views[:_IOV_MAX])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


async def read_in_thread(chunks: Iterator[bytes]) -> AsyncGenerator[bytes, None]:
    """The items of a blocking iterator (file reads), each taken in a worker thread so
    the event loop never waits on a disk; the iterator is closed however this ends."""
    try:
        while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


async def write_stream(
    chunks: AsyncIterable[bytes],
    fd: int,
    *,
    digest: object = None,
    before_block: Callable[[int], None] | None = None,
    after_block: Callable[[int], object] | None = None,
) -> int:
    """Write `chunks` to `fd`; return the bytes written.

    `before_block(total)` runs before each block is written, with the running total
    (a quota or length check may raise there); `after_block(total)` after it (progress).
    `digest` (a hashlib object) sees every byte, in order. Bytes received before the
    stream broke are written before the error propagates: a resumable upload keeps them.
    """
    loop = asyncio.get_running_loop()
    writing: asyncio.Future[None] | None = None
    total = 0
    pending: list[bytes] = []

    async def write(block: list[bytes]) -> None:
        nonlocal writing, total
        total += sum(map(len, block))
        if before_block is not None:
            before_block(total)
        if writing is not None:
            await writing  # one write in flight at a time
        writing = loop.run_in_executor(None, _writev, fd, block, digest)
        if after_block is not None:
            report, upto = after_block, total
            writing.add_done_callback(lambda _: report(upto))

    try:
        size = 0
        async for chunk in chunks:
            pending.append(chunk)
            size += len(chunk)
            if size >= CHUNK:
                block, pending, size = pending, [], 0
                await write(block)
        if pending:
            block, pending = pending, []
            await write(block)
    except Exception:
        with anyio.CancelScope(shield=True):
            if pending:  # what arrived before the break is kept (unless over a limit)
                await write(pending)
            if writing is not None:
                await writing
        raise
    finally:
        if writing is not None and not writing.done():
            with anyio.CancelScope(shield=True):
                await asyncio.wait([writing])
    if writing is not None:
        await writing
    return total
