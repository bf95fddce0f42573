"""Receiving bytes into a file: batched writes off the event loop, quota and digest kept."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterable
from pathlib import Path
from typing import Any

import anyio

from ..._exceptions import InvalidRequest
from ..._pipe import write_stream
from ._blob import CHUNK, LocalFile
from ._quota import Quota

__all__ = ["Body", "receive"]

Body = AsyncIterable[bytes] | LocalFile


async def receive(
    body: Body,
    target: Path,
    quota: Quota,
    *,
    append: bool = False,
    digest: Any = None,
    limit: int | None = None,
    path: str = "",
) -> int:
    """Write `body` to `target` (appending if asked) and return the bytes written.

    Bytes written before a failure stay in `target` (a resumable upload keeps them);
    callers that must not keep them write to a temp file and remove it. `limit` caps
    the bytes accepted, the quota is checked as they arrive, and `digest` (a hashlib
    object) sees every byte.
    """
    if isinstance(body, LocalFile):
        return await anyio.to_thread.run_sync(_copy_local, body.path, target, quota, digest, path)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC), 0o644)

    def admit(total: int) -> None:
        if limit is not None and total > limit:
            raise InvalidRequest(f"the body of {path!r} is longer than the {limit} bytes declared")
        quota.check(total, path=path)

    try:
        return await write_stream(body, fd, digest=digest, before_block=admit)
    finally:
        os.close(fd)


def _copy_local(source: Path, target: Path, quota: Quota, digest: Any, path: str) -> int:
    if not source.is_file():
        raise InvalidRequest(f"{source} is not a readable file")
    size = source.stat().st_size
    quota.check(size, path=path)
    if digest is None:
        shutil.copyfile(source, target)  # copy_file_range / sendfile: no bytes through Python
        return size
    with source.open("rb") as reader, target.open("wb") as writer:
        while data := reader.read(CHUNK):
            digest.update(data)
            writer.write(data)
    return size
