"""ZIP archives of storage folders, built on the fly and extracted defensively.

`zip_stream` turns a folder into a ZIP archive while it is being sent: zipfile writes into a
small in-memory sink that is drained every `chunk_size` bytes, so there is never a temporary
file and never the whole archive in memory. `zip_to_file` stores the same archive under a
name, atomically. Neither follows a symlink, since a link may lead out of the storage.

`unzip` treats every archive as hostile. Everything the central directory can tell is checked
before a byte is written: the number of entries, the declared size, names that would escape
the destination (zip slip), symlink and encrypted entries, suspicious compression ratios (zip
bombs) and clashes with what the destination already holds. Bytes actually written are counted
too, because declared sizes can lie. Extraction goes to a hidden folder next to the
destination and is moved into place only once complete, so a failure leaves nothing behind.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, NamedTuple, Protocol

from ..._exceptions import ApiError, Conflict, InvalidRequest, NotFound
from ._paths import is_private
from ._unzip import UnzipLimits, unzip
from ._walker import Walker

__all__ = [
    "UnzipLimits",
    "stream_folder",
    "stream_open_folder",
    "unzip",
    "zip_into",
    "zip_stream",
    "zip_to_file",
]


class Writable(Protocol):
    def fileno(self) -> int: ...
    def write(self, data: bytes, /) -> int: ...


Progress = Callable[[int, int], None]
"""Called as progress(entries_done, bytes_done) after each archive entry."""

_STORED_SUFFIXES = frozenset(
    {".zip", ".gz", ".bz2", ".xz", ".zst", ".png", ".jpg", ".jpeg", ".mp4", ".parquet"}
)
_COMPRESS_LEVEL = 1
_MIN_READ = 64 << 10
_MAX_READ = 1 << 20
_FILE_CHUNK = 1 << 20
_BOMB_MIN_SIZE = 1 << 20
_MAX_NAME = 255
_DRIVE = re.compile(r"^[A-Za-z]:")
_MSDOS_DIRECTORY = 0x10


# --- building archives -------------------------------------------------------------------------


class _Sink:
    """A write-only file for zipfile that keeps the bytes until the generator hands them on.

    It has no tell() or seek(), which makes zipfile write data descriptors instead of going
    back to patch local headers: exactly what a stream needs.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = bytes(self.buffer)
        self.buffer.clear()
        return data


class _Item(NamedTuple):
    """One thing found by `_walk`; opened later through `dir_fd` so no link is followed."""

    arcname: str
    dir_fd: int
    name: str
    stat: os.stat_result

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.stat.st_mode)


def zip_stream(root: Path, base: Path, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """Yield a ZIP archive of the folder `base` (inside `root`) in chunks of about `chunk_size`.

    Member names are relative to `base`; folders are entries ending in '/'. Symlinks and the
    engine's own `.dxflow` folder are left out. Errors (such as `base` not being a folder)
    surface on the first iteration. `base` is walked from `root` like any storage path.
    """
    relative = base.relative_to(root).parts
    yield from stream_folder(Walker(str(root)), list(relative), chunk_size)


def stream_folder(
    walker: Walker,
    parts: list[str],
    chunk_size: int = 1 << 20,
    exclude: frozenset[tuple[int, int]] = frozenset(),
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """The archive of the folder `parts` below the walker's root, as `zip_stream` makes it."""
    if parts and is_private(parts[0]):
        yield from _stream(None, False, chunk_size, exclude, progress)
        return
    fd = _open_base(walker, parts)
    yield from _stream(fd, not parts, chunk_size, exclude, progress)


def stream_open_folder(fd: int, is_root: bool, chunk_size: int = 1 << 20) -> Iterator[bytes]:
    """The archive of the folder open as `fd` (consumed): the folder checked when the
    request was, whatever its name leads to by the time the bytes are made."""
    yield from _stream(fd, is_root, chunk_size, frozenset(), None)


def zip_to_file(root: Path, base: Path, dest: Path, progress: Progress | None = None) -> None:
    """Write the archive `zip_stream` would produce to `dest`, atomically.

    `progress(entries_done, bytes_done)` is called after each entry, `bytes_done` counting
    the file content read so far (before compression).
    """
    if dest.is_dir():
        raise Conflict(f"zip: '{dest.name}' is a folder; name the archive's own path "
                       "(e.g. '{dest.name}.zip')", path=dest.name)  # fmt: skip
    tmp = dest.parent / f".{dest.name}.zip-{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            replaced = _identity(dest.stat()) if dest.exists() else None
            relative = list(base.relative_to(root).parts)
            zip_into(Walker(str(root)), relative, out, replaced, progress)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def zip_into(
    walker: Walker,
    parts: list[str],
    out: Writable,
    replaced: tuple[int, int] | None = None,
    progress: Progress | None = None,
) -> None:
    """Write the archive of folder `parts` to the open file `out`.

    The archive may be written inside the folder being archived: it must not swallow
    itself (an endless loop) or the file it is about to replace (`replaced`).
    """
    exclude = {_identity(os.fstat(out.fileno()))}
    if replaced is not None:
        exclude.add(replaced)
    for chunk in stream_folder(walker, parts, _FILE_CHUNK, frozenset(exclude), progress):
        out.write(chunk)


def _stream(
    base_fd: int | None,
    is_root: bool,
    chunk_size: int,
    exclude: frozenset[tuple[int, int]],
    progress: Progress | None,
) -> Iterator[bytes]:
    sink = _Sink()
    read_size = min(max(chunk_size, _MIN_READ), _MAX_READ)
    entries = done = 0
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for item in _walk(base_fd, is_root, exclude):
            if item.is_dir:
                archive.mkdir(_zip_info(item.arcname, item.stat))
            else:
                src = _open_file(item)
                if src is None:
                    continue
                with src:
                    for count in _add_file(archive, item.arcname, src, read_size):
                        done += count
                        if len(sink.buffer) >= chunk_size:
                            yield sink.take()
            entries += 1
            if progress is not None:
                progress(entries, done)
            if len(sink.buffer) >= chunk_size:
                yield sink.take()
    if sink.buffer:
        yield sink.take()


def _add_file(
    archive: zipfile.ZipFile, arcname: str, src: IO[bytes], read_size: int
) -> Iterator[int]:
    """Copy `src` into a new member chunk by chunk, yielding the size of each chunk read."""
    info = _zip_info(arcname, os.fstat(src.fileno()))
    # force_zip64: the size is unknown up front on a stream, and files may exceed 2 GiB.
    with archive.open(info, "w", force_zip64=True) as member:
        while chunk := src.read(read_size):
            member.write(chunk)
            yield len(chunk)


def _zip_info(arcname: str, st: os.stat_result) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(arcname, _date_time(st.st_mtime))
    info.external_attr = (st.st_mode & 0xFFFF) << 16
    if stat.S_ISDIR(st.st_mode):
        info.external_attr |= _MSDOS_DIRECTORY
        # ZipFile.mkdir fills these in only for a name, not for a ZipInfo.
        info.CRC = info.compress_size = info.file_size = 0
    elif Path(arcname).suffix.lower() in _STORED_SUFFIXES:
        # Already compressed: deflating again costs CPU and gains nothing.
        info.compress_type = zipfile.ZIP_STORED
    else:
        info.compress_type = zipfile.ZIP_DEFLATED
        # ZipInfo has no public level before 3.13; zipfile sets this same slot itself.
        info._compresslevel = _COMPRESS_LEVEL  # type: ignore[attr-defined]
    return info


def _date_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    """The ZIP timestamp for `mtime`, clamped to the years a ZIP header can hold."""
    year, month, day, hour, minute, second = time.localtime(mtime)[:6]
    if year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    if year > 2107:
        return (2107, 12, 31, 23, 59, 59)
    return (year, month, day, hour, minute, second)


def _walk(
    base_fd: int | None, is_root: bool, exclude: frozenset[tuple[int, int]]
) -> Iterator[_Item]:
    """Folders and regular files under `base_fd` (consumed), depth first in sorted order,
    links skipped.

    Each folder is opened relative to its parent's descriptor with O_NOFOLLOW, so a folder
    swapped for a symlink after listing is refused rather than followed.
    """
    if base_fd is None:
        return
    stack = [(base_fd, "", iter(_sorted_names(base_fd)))]
    try:
        while stack:
            fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            if is_root and not prefix and is_private(name):
                continue
            item = _look(fd, prefix, name)
            if item is None or _identity(item.stat) in exclude:
                continue
            if item.is_dir:
                child = _open_dir(name, fd)
                if child is None:
                    continue
                stack.append((child, item.arcname, iter(_sorted_names(child))))
            yield item
    finally:
        for fd, _, _ in stack:
            os.close(fd)


def _look(dir_fd: int, prefix: str, name: str) -> _Item | None:
    """The folder or regular file `name`, or None for links, devices and vanished entries."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(st.st_mode):
        return _Item(prefix + _arc_name(name) + "/", dir_fd, name, st)
    if stat.S_ISREG(st.st_mode):
        return _Item(prefix + _arc_name(name), dir_fd, name, st)
    return None


def _arc_name(name: str) -> str:
    # A name that is not valid UTF-8 cannot be stored by zipfile; keep the file, mark the name.
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _sorted_names(dir_fd: int) -> list[str]:
    return sorted(os.listdir(dir_fd))


def _open_base(walker: Walker, parts: list[str]) -> int:
    shown = "/".join(parts) or "."
    try:
        return walker.open_dir(parts, shown)
    except NotFound:
        raise NotFound(f"zip: '{shown}' does not exist", path=shown) from None
    except ApiError as exc:  # a file, or a symlink (never followed)
        raise InvalidRequest(
            f"zip: '{shown}' is not a folder ({exc.message})", path=shown
        ) from None


def _open_dir(name: str, dir_fd: int) -> int | None:
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        # Gone or replaced (by a file or a link) since it was listed.
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return None
        raise


def _open_file(item: _Item) -> IO[bytes] | None:
    # O_NONBLOCK: a file swapped for a FIFO since listing must not hang the stream.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(item.name, flags, dir_fd=item.dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb")


def _identity(st: os.stat_result) -> tuple[int, int]:
    return (st.st_dev, st.st_ino)
