"""Local files at the ends of a transfer: what every transport's get_file shares."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

from ._base import Progress

__all__ = ["copy_file", "is_special", "write_chunks"]


def is_special(target: Path) -> bool:
    """A device, FIFO or socket: something to write into, not a file to replace."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def copy_file(source: Path, target: Path) -> None:
    """A kernel copy (copy_file_range / sendfile where the OS has them)."""
    shutil.copyfile(source, target)


async def write_chunks(
    chunks: AsyncIterator[bytes], target: Path, size: int | None, progress: Progress
) -> int:
    """Write `chunks` into `target` (created or truncated); the byte count."""
    from .._pipe import write_stream

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = await write_stream(
            chunks, fd, after_block=(lambda total: progress(total, size)) if progress else None
        )
    finally:
        os.close(fd)
    if progress:
        progress(done, size)
    return done
