"""Every file the loader reads from the engine host (compose and env files) goes through here.

The loader reads files named by the caller; a workflow policy decides which of them a
caller may have read on its behalf, and how they are opened. `guarded_reads(guard)`
installs a guard for one load: each file is offered to it BEFORE it is opened, and the
guard opens it itself (the workflow policy walks it from an allowed folder, never
following a link) or refuses it. A refused file is recorded by the guard and read as
empty, so the load goes on and every refusal is reported at once, and no byte of it is
ever read (nor quoted in an error).

Whoever opens it, only a regular file on a disk file system is read: never a FIFO (the
read would block), a device, or a file of /proc or /sys (``/proc/self/environ`` is the
engine's own environment). And every file the loader looks at, read or found missing, is
noted with a stamp of its metadata (`recording`), so a cached project can tell when one
changed and must be loaded again.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = [
    "ReadGuard",
    "Stamp",
    "check_file",
    "considered",
    "guarded_reads",
    "open_plain",
    "read_host_file",
    "recording",
    "stamp",
]

ReadGuard = Callable[[str, str], int | None]
"""(absolute path, document path that named it) -> a read fd of that file, opened by the
guard; or None: refused, never opened. Raises OSError as `open` does (missing, denied)."""

Stamp = tuple[int, int, int, int, int, int]
"""A file's (device, inode, mode, size, mtime ns, ctime ns), without following a last link."""

_GUARD: ContextVar[ReadGuard | None] = ContextVar("dxflow_compose_read_guard", default=None)
_SEEN: ContextVar[dict[str, Stamp | None] | None] = ContextVar(
    "dxflow_compose_files_seen", default=None
)

# statfs(2) f_type of the kernel's pseudo file systems: what a "file" there holds is made up
# on read (the reader's environment, kernel state), never a user's env file.
_PSEUDO_FS = {
    0x9FA0: "proc",
    0x62656572: "sysfs",
    0x64626720: "debugfs",
    0x74726163: "tracefs",
    0x73636673: "securityfs",
    0x62656570: "configfs",
    0xDE5E81E4: "efivarfs",
    0x27E0EB: "cgroup",
    0x63677270: "cgroup2",
    0xCAFE4A11: "bpf",
    0x6165676C: "pstore",
}
_MAX_FILE = 32 << 20  # as a Compose body: an env file larger than that is no env file


def _load_fstatfs() -> Callable[[int], int | None] | None:
    """The f_type of an open fd (Linux: the first field of struct statfs, a long)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).fstatfs
    except (OSError, AttributeError):
        return None

    def fs_type(fd: int) -> int | None:
        buffer = ctypes.create_string_buffer(512)  # struct statfs is 120 bytes on 64-bit
        if function(ctypes.c_int(fd), buffer) != 0:
            return None
        return ctypes.c_ulong.from_buffer(buffer).value & 0xFFFFFFFF

    return fs_type


_fs_type = _load_fstatfs()


def stamp(path: str) -> Stamp | None:
    try:
        st = os.lstat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino, st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def considered(path: str) -> None:
    """Note that the load looked at `path` (read it, or found it missing)."""
    seen = _SEEN.get()
    if seen is not None and path not in seen:
        seen[path] = stamp(path)


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Stamp | None]]:
    """Every file the loads inside looked at, with its stamp from before it was read."""
    seen: dict[str, Stamp | None] = {}
    token = _SEEN.set(seen)
    try:
        yield seen
    finally:
        _SEEN.reset(token)


@contextlib.contextmanager
def guarded_reads(guard: ReadGuard | None) -> Iterator[None]:
    token = _GUARD.set(guard)
    try:
        yield
    finally:
        _GUARD.reset(token)


def _not_regular(why: str) -> OSError:
    return OSError(errno.EINVAL, f"{why}; only a regular file on a disk file system is read")


def check_file(fd: int) -> os.stat_result:
    """The stat of `fd`, if it is a regular file outside the kernel's pseudo file systems."""
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular("not a regular file")
    kind = _PSEUDO_FS.get(_fs_type(fd) or 0) if _fs_type is not None else None
    if kind is not None:
        raise _not_regular(f"a file of the kernel's {kind} file system")
    return st


def open_plain(path: str) -> int:
    """`path` opened for reading as `open` would (links followed), with no guard: a FIFO or
    a device is refused before it is opened, so opening has no effect and never blocks."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise _not_regular("not a regular file")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    return os.open(path, flags)


def read_host_file(path: str, where: str) -> bytes | None:
    """The bytes of the host file `path` (named at `where`), or None: refused by the guard.

    Raises OSError (missing, unreadable, not a regular file) and ValueError (a NUL in the
    path), for the caller to name the file in its own error.
    """
    considered(path)
    guard = _GUARD.get()
    fd = guard(path, where) if guard is not None else open_plain(path)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as handle:
        check_file(fd)  # whoever opened it, and after the open: the very inode read
        data = handle.read(_MAX_FILE + 1)
    if len(data) > _MAX_FILE:
        raise OSError(errno.EFBIG, f"larger than {_MAX_FILE >> 20} MiB")
    return data
