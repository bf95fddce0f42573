"""Small operations on directory fds and open files, shared by the object services."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import IO

from ..._wire import CHUNK
from ._quota import Quota
from ._walker import DIR_FLAGS

__all__ = ["Charged", "closing", "copy_fd", "exists_at", "has_entries", "lstat_at", "sha256_of"]


def has_entries(dir_fd: int, name: str) -> bool:
    with closing(os.open(name, DIR_FLAGS, dir_fd=dir_fd)) as fd:
        return bool(os.listdir(fd))


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """The entry `name` in `dir_fd` itself (a link is not followed), or None."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def exists_at(dir_fd: int, name: str) -> bool:
    return lstat_at(dir_fd, name) is not None


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


def sha256_of(fd: int) -> str:
    hasher, offset = hashlib.sha256(), 0
    while data := os.pread(fd, CHUNK, offset):
        hasher.update(data)
        offset += len(data)
    return hasher.hexdigest()


def copy_fd(source: int, out: int, size: int) -> None:
    done = 0
    while done < size:  # in the kernel: no bytes through Python
        sent = os.sendfile(out, source, done, min(size - done, 1 << 30))
        if not sent:
            return
        done += sent


class Charged:
    """A file that counts what is written to it in the quota (a zip being built)."""

    def __init__(self, out: IO[bytes], quota: Quota, path: str) -> None:
        self._out, self._quota, self._path = out, quota, path

    def fileno(self) -> int:
        return self._out.fileno()

    def write(self, data: bytes) -> int:
        self._quota.reserve(len(data), path=self._path)
        return self._out.write(data)
