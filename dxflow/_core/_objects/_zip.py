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
import shutil
import stat
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from ..._exceptions import (
    Conflict,
    InsufficientStorage,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
)
from ._paths import PRIVATE

__all__ = ["UnzipLimits", "unzip", "zip_stream", "zip_to_file"]

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
    surface on the first iteration.
    """
    yield from _stream(root, base, chunk_size, frozenset(), None)


def zip_to_file(root: Path, base: Path, dest: Path, progress: Progress | None = None) -> None:
    """Write the archive `zip_stream` would produce to `dest`, atomically.

    `progress(entries_done, bytes_done)` is called after each entry, `bytes_done` counting
    the file content read so far (before compression).
    """
    if dest.is_dir():
        raise Conflict(f"zip: '{dest.name}' is a folder", path=dest.name)
    tmp = _hidden_sibling(dest, "zip")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            # The archive may be written inside the folder being archived: it must not
            # swallow itself (an endless loop) or the file it is about to replace.
            exclude = {_identity(os.fstat(out.fileno()))}
            if dest.exists():
                exclude.add(_identity(dest.stat()))
            for chunk in _stream(root, base, _FILE_CHUNK, frozenset(exclude), progress):
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _stream(
    root: Path,
    base: Path,
    chunk_size: int,
    exclude: frozenset[tuple[int, int]],
    progress: Progress | None,
) -> Iterator[bytes]:
    sink = _Sink()
    read_size = min(max(chunk_size, _MIN_READ), _MAX_READ)
    entries = done = 0
    with zipfile.ZipFile(sink, "w", allowZip64=True) as archive:
        for item in _walk(root, base, exclude):
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


def _walk(root: Path, base: Path, exclude: frozenset[tuple[int, int]]) -> Iterator[_Item]:
    """Folders and regular files under `base`, depth first in sorted order, links skipped.

    Each folder is opened relative to its parent's descriptor with O_NOFOLLOW, so a folder
    swapped for a symlink after listing is refused rather than followed.
    """
    relative = base.relative_to(root).parts
    if relative and relative[0] == PRIVATE:
        return
    skip_top = PRIVATE if not relative else None
    top = _open_base(base, "/".join(relative) or ".")
    stack = [(top, "", iter(_sorted_names(top)))]
    try:
        while stack:
            fd, prefix, names = stack[-1]
            name = next(names, None)
            if name is None:
                stack.pop()
                os.close(fd)
                continue
            if name == skip_top and not prefix:
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


def _open_base(base: Path, shown: str) -> int:
    try:
        return os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise NotFound(f"zip: '{shown}' does not exist", path=shown) from None
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            raise InvalidRequest(f"zip: '{shown}' is not a folder", path=shown) from None
        raise


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


def _hidden_sibling(dest: Path, kind: str) -> Path:
    # Same folder, hence same filesystem: the final rename is atomic. Created by the caller
    # with os.open/os.mkdir rather than tempfile, which would impose mode 0600/0700.
    return dest.parent / f".{dest.name}.{kind}-{secrets.token_hex(6)}"


# --- extracting archives -----------------------------------------------------------------------


@dataclass(frozen=True)
class UnzipLimits:
    """What an archive may contain before `unzip` refuses it."""

    max_entries: int = 100_000
    max_total_size: int = 8 << 30
    max_ratio: float = 200.0


_Parts = tuple[str, ...]


class _Planned(NamedTuple):
    info: zipfile.ZipInfo
    parts: _Parts


class _Layout(NamedTuple):
    """The paths the archive creates: files (with their entry name) and folders."""

    files: dict[_Parts, str]
    dirs: set[_Parts]


def unzip(
    archive: Path,
    dest: Path,
    limits: UnzipLimits = UnzipLimits(),  # frozen, so one shared default is safe
    overwrite: bool = False,
    progress: Progress | None = None,
) -> tuple[int, int]:
    """Extract `archive` into the folder `dest`; return (entries, bytes) extracted.

    `dest` is created if missing; if it exists, the archive's content is merged into it and
    existing files are replaced only with `overwrite`. On any error nothing is left behind.
    `progress(entries_done, bytes_done)` is called after each entry.
    """
    _check_dest(dest)
    with _open_archive(archive) as zf:
        plan = _plan(zf.infolist(), limits)
        layout = _layout(plan)
        if os.path.lexists(dest):
            _check_existing(layout, dest, overwrite)
        tmp = _hidden_sibling(dest, "unzip")
        tmp.mkdir()
        try:
            result = _extract_all(zf, archive, plan, tmp, limits, progress)
            _install(tmp, dest, overwrite)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(f"unzip: no space left for '{dest.name}'") from None
            raise
        finally:
            # After a successful install of a new folder, tmp is gone and this is a no-op.
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _check_dest(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise Conflict(f"unzip: '{dest.name}' exists and is not a folder", path=dest.name)
    if not dest.parent.is_dir():
        raise NotFound(f"unzip: the folder to hold '{dest.name}' does not exist")


def _open_archive(archive: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, EOFError, ValueError, IsADirectoryError) as exc:
        raise InvalidRequest(
            f"unzip: '{archive.name}' is not a zip archive ({exc})", path=archive.name
        ) from None


def _plan(infos: list[zipfile.ZipInfo], limits: UnzipLimits) -> list[_Planned]:
    """Check every entry against the limits; return those with something to create."""
    if len(infos) > limits.max_entries:
        raise InvalidRequest(
            f"unzip: the archive has {len(infos)} entries, more than the limit of "
            f"{limits.max_entries}",
            entries=len(infos),
            limit=limits.max_entries,
        )
    plan: list[_Planned] = []
    for info in infos:
        parts = _entry_parts(info.orig_filename)
        _check_entry(info, limits)
        if parts:
            plan.append(_Planned(info, parts))
    _check_declared_total(sum(info.file_size for info in infos), limits)
    return plan


def _entry_parts(name: str) -> _Parts:
    """The path components of an entry name, refusing any that could leave the destination.

    zipfile cuts `filename` at a NUL byte, so this is given `orig_filename`, which keeps it.
    With these rules no name can resolve outside: extraction happens in a fresh folder that
    holds no symlinks, and existing symlinks in the destination are refused by
    `_check_existing`.
    """
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if (
        "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or _DRIVE.match(name)
        or ".." in parts
    ):
        raise InvalidRequest(
            f"unzip: entry '{_shown(name)}' would land outside the destination (zip slip)",
            entry=_shown(name),
        )
    if any(len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME for part in parts):
        raise InvalidRequest(
            f"unzip: entry '{_shown(name)}' has a name longer than {_MAX_NAME} bytes",
            entry=_shown(name),
        )
    return parts


def _check_entry(info: zipfile.ZipInfo, limits: UnzipLimits) -> None:
    name = _shown(info.orig_filename)
    if stat.S_ISLNK(info.external_attr >> 16):
        raise InvalidRequest(
            f"unzip: entry '{name}' is a symlink; archives with links are refused", entry=name
        )
    if info.flag_bits & 0x1:
        raise InvalidRequest(f"unzip: entry '{name}' is encrypted", entry=name)
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > _BOMB_MIN_SIZE and ratio > limits.max_ratio:
        raise PayloadTooLarge(
            f"unzip: entry '{name}' would expand {ratio:.0f} times to {info.file_size} bytes, "
            f"over the limit of {limits.max_ratio:g} times (zip bomb)",
            entry=name,
        )


def _check_declared_total(total: int, limits: UnzipLimits) -> None:
    if total > limits.max_total_size:
        raise PayloadTooLarge(
            f"unzip: the archive would expand to {total} bytes, more than the limit of "
            f"{limits.max_total_size} bytes",
            size=total,
            limit=limits.max_total_size,
        )


def _layout(plan: list[_Planned]) -> _Layout:
    """What the plan creates, refusing entries that repeat or are both a file and a folder."""
    files: dict[_Parts, str] = {}
    dirs: set[_Parts] = set()
    for info, parts in plan:
        dirs.update(parts[:i] for i in range(1, len(parts)))
        if info.is_dir():
            dirs.add(parts)
        elif parts in files:
            name = _shown(info.orig_filename)
            raise InvalidRequest(f"unzip: entry '{name}' appears twice", entry=name)
        else:
            files[parts] = info.orig_filename
    for parts, name in files.items():
        if parts in dirs:
            shown = _shown(name)
            raise InvalidRequest(f"unzip: entry '{shown}' is both a file and a folder")
    return _Layout(files, dirs)


def _check_existing(layout: _Layout, dest: Path, overwrite: bool) -> None:
    """Refuse, before writing, anything the archive cannot put into the existing `dest`."""
    for parts in sorted(layout.dirs):
        mode = _lmode(dest.joinpath(*parts))
        # lstat: a symlink where a folder is needed is refused, never followed.
        if mode is not None and not stat.S_ISDIR(mode):
            raise _exists("/".join(parts), "and is not a folder")
    for parts in sorted(layout.files):
        mode = _lmode(dest.joinpath(*parts))
        if mode is None:
            continue
        if stat.S_ISDIR(mode):
            raise _exists("/".join(parts), "and is a folder")
        if not overwrite:
            raise _exists("/".join(parts), "(pass overwrite to replace it)")


def _lmode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None


def _exists(relative: str, why: str) -> Conflict:
    shown = _shown(relative)
    return Conflict(f"unzip: '{shown}' already exists in the destination {why}", path=shown)


def _extract_all(
    zf: zipfile.ZipFile,
    archive: Path,
    plan: list[_Planned],
    tmp: Path,
    limits: UnzipLimits,
    progress: Progress | None,
) -> tuple[int, int]:
    written = 0
    for done, (info, parts) in enumerate(plan, 1):
        target = tmp.joinpath(*parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            written = _extract_file(zf, archive, info, target, written, limits)
        if progress is not None:
            progress(done, written)
    return len(plan), written


def _extract_file(
    zf: zipfile.ZipFile,
    archive: Path,
    info: zipfile.ZipInfo,
    target: Path,
    written: int,
    limits: UnzipLimits,
) -> int:
    """Copy one entry to `target` in chunks; return the running total of bytes written."""
    try:
        with zf.open(info) as src, open(target, "xb") as out:
            while chunk := src.read(_FILE_CHUNK):
                written += len(chunk)
                # Declared sizes were checked already, but only what is written is certain.
                if written > limits.max_total_size:
                    raise PayloadTooLarge(
                        f"unzip: the archive expands to more than the limit of "
                        f"{limits.max_total_size} bytes",
                        limit=limits.max_total_size,
                    )
                out.write(chunk)
            _keep_executable(out, info)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        name = _shown(info.orig_filename)
        raise InvalidRequest(
            f"unzip: '{archive.name}' is damaged at entry '{name}' ({exc})", entry=name
        ) from None
    return written


def _keep_executable(out: IO[bytes], info: zipfile.ZipInfo) -> None:
    # Only the executable bits are taken from the archive (scripts stay runnable); the rest
    # follows the umask, and setuid/setgid/sticky bits are never restored.
    mode = info.external_attr >> 16
    if info.create_system != 3 or not mode & 0o111:
        return
    current = os.fstat(out.fileno()).st_mode & 0o777
    os.fchmod(out.fileno(), current | (current & 0o444) >> 2)


def _install(tmp: Path, dest: Path, overwrite: bool) -> None:
    """Move the extracted tree into place: the whole folder if `dest` is new, else merge."""
    if not os.path.lexists(dest):
        try:
            tmp.rename(dest)
            return
        except OSError:
            # Someone created dest meanwhile: merge, re-checking each path on the way.
            if not os.path.lexists(dest):
                raise
    _merge(tmp, dest, overwrite, "")


def _merge(src_dir: Path, dst_dir: Path, overwrite: bool, prefix: str) -> None:
    for name in sorted(os.listdir(src_dir)):
        src, dst = src_dir / name, dst_dir / name
        mode = _lmode(dst)
        if mode is None:
            src.rename(dst)
        elif src.is_dir():
            if not stat.S_ISDIR(mode):
                raise _exists(prefix + name, "and is not a folder")
            _merge(src, dst, overwrite, prefix + name + "/")
        elif stat.S_ISDIR(mode) or not overwrite:
            raise _exists(prefix + name, "(pass overwrite to replace it)")
        else:
            # os.replace swaps a symlink itself, never what it points to.
            os.replace(src, dst)


def _shown(name: str) -> str:
    name = name.replace("\x00", "\\0")
    return name if len(name) <= 200 else name[:200] + "..."
