"""Receiving bytes into a file: batched writes off the event loop, quota and digest kept."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterable
from typing import Any

import anyio

from ..._exceptions import InvalidRequest
from ..._pipe import write_stream
from ..._wire import CHUNK
from ._blob import LocalFile
from ._quota import Quota

__all__ = ["Body", "receive"]

Body = AsyncIterable[bytes] | LocalFile


async def receive(
    body: Body,
    fd: int,
    quota: Quota,
    *,
    digest: Any = None,
    limit: int | None = None,
    path: str = "",
) -> int:
    """Write `body` to the open file `fd` (at its end) and return the bytes written.

    Bytes written before a failure stay in the file (a resumable upload keeps them);
    callers that must not keep them write to a temp file, remove it and give the bytes
    back to the quota. `limit` caps the bytes accepted; the quota is charged as blocks
    arrive (so concurrent uploads cannot overshoot it together) and ends up charged
    with exactly what the file grew by; `digest` (a hashlib object) sees every byte.
    """
    start = os.fstat(fd).st_size
    charged = 0

    def admit(total: int) -> None:
        nonlocal charged
        if limit is not None and total > limit:
            raise InvalidRequest(f"the body of {path!r} is longer than the {limit} bytes declared")
        quota.reserve(total - charged, path=path)
        charged = total

    try:
        if isinstance(body, LocalFile):
            return await anyio.to_thread.run_sync(_copy_local, body, fd, admit, digest)
        return await write_stream(body, fd, digest=digest, before_block=admit)
    finally:
        quota.changed(os.fstat(fd).st_size - start - charged)  # what was really written


def _copy_local(body: LocalFile, out: int, admit: Any, digest: Any) -> int:
    try:
        source = os.open(body.path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise InvalidRequest(f"{body.path} is not a readable file ({exc.strerror})") from None
    try:
        st = os.fstat(source)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidRequest(f"{body.path} is not a regular file")
        size = st.st_size
        admit(size)
        done = 0
        while done < size:
            if digest is None:  # sendfile: no bytes through Python
                sent = os.sendfile(out, source, done, min(size - done, 1 << 30))
            else:
                data = os.pread(source, min(CHUNK, size - done), done)
                digest.update(data)
                sent = os.write(out, data)
            if not sent:  # the source shrank
                break
            done += sent
        return done
    finally:
        os.close(source)
