"""Extracting ZIP archives into storage, defensively.

`unzip` treats every archive as hostile. Everything the central directory can tell is checked
before a byte is written: the number of entries, the declared size, names that would escape
the destination (zip slip) or reach the engine's private folder, symlink and encrypted
entries, suspicious compression ratios (zip bombs: every entry, and the archive as a whole)
and clashes with what the destination already holds. Bytes actually written are counted
too, against the total cap and the storage quota, because declared sizes can lie.

Extraction goes to a hidden folder next to the destination and is moved into place only once
complete, so a failure leaves nothing behind. Every folder is created and entered through
directory fds with O_NOFOLLOW: a symlink planted in the destination (or in the hidden folder,
by anyone who can write into storage) while the archive is extracted is refused, never
followed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, NamedTuple

from ..._exceptions import Conflict, InsufficientStorage, InvalidRequest, NotFound, PayloadTooLarge
from ._paths import PRIVATE, is_private
from ._walker import DIR_FLAGS, make_dir

__all__ = ["UnzipLimits", "unzip", "unzip_at"]

Progress = Callable[[int, int], None]
"""Called as progress(entries_done, bytes_done) after each archive entry."""
Charge = Callable[[int], None]
"""Called with bytes about to be written (may raise: the quota), or negative when freed."""

_FILE_CHUNK = 1 << 20
_BOMB_MIN_SIZE = 4 << 10
"""Entries up to this size are not judged by their ratio: with its ~100 bytes of headers
(local and central), such an entry expands at most ~40 times, so an archive of them does
too; the total cap bounds them all."""
_MAX_NAME = 255
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class UnzipLimits:
    """What an archive may contain before `unzip` refuses it."""

    max_entries: int = 100_000
    max_total_size: int = 8 << 30
    max_ratio: float = 200.0


@dataclass(frozen=True)
class _Modes:
    file: int = 0o600
    dir: int = 0o700


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
    """Extract `archive` into the folder `dest` (by paths: the folder holding `dest` is
    trusted); see `unzip_at`."""
    try:
        parent = os.open(dest.parent, DIR_FLAGS)
    except OSError:
        raise NotFound(f"unzip: the folder to hold '{dest.name}' does not exist") from None
    try:
        with open(archive, "rb") as source:
            return unzip_at(source, archive.name, parent, dest.name, limits, overwrite, progress)
    finally:
        os.close(parent)


def unzip_at(
    source: IO[bytes],
    archive_name: str,
    parent_fd: int,
    name: str | None,
    limits: UnzipLimits = UnzipLimits(),
    overwrite: bool = False,
    progress: Progress | None = None,
    charge: Charge | None = None,
    modes: tuple[int, int] = (0o600, 0o700),
) -> tuple[int, int]:
    """Extract the archive `source` into the folder `name` in `parent_fd` (`parent_fd`
    itself, the storage root, when `name` is None); return (entries, bytes) extracted.

    The destination is created if missing; if it exists, the archive's content is merged
    into it and existing files are replaced only with `overwrite`. On any error nothing is
    left behind. `progress(entries_done, bytes_done)` is called after each entry, `charge`
    with the bytes of each chunk before it is written, and `modes` are the (file, folder)
    modes of what is created.
    """
    shown = name or "."
    dest_fd = _open_dest(parent_fd, name)
    try:
        with _open_archive(source, archive_name) as zf:
            plan = _plan(zf.infolist(), limits)
            layout = _layout(plan)
            if name is None:
                _check_private(layout)
            if dest_fd is not None:
                _check_existing(layout, dest_fd, overwrite)
            tmp = f".{name or ''}.unzip-{secrets.token_hex(6)}"
            make_dir(parent_fd, tmp, modes[1])
            try:
                with _fd(os.open(tmp, DIR_FLAGS, dir_fd=parent_fd)) as tmp_fd:
                    job = _Job(zf, archive_name, limits, progress, charge, _Modes(*modes))
                    result = job.extract_all(plan, tmp_fd)
                    if dest_fd is None and _moved(parent_fd, tmp, name):
                        return result
                    if dest_fd is None:  # created meanwhile: merge into it
                        dest_fd = _open_dest(parent_fd, name)
                    assert dest_fd is not None
                    _merge(tmp_fd, dest_fd, overwrite, "", charge)
                return result
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise InsufficientStorage(f"unzip: no space left for '{shown}'") from None
                raise
            finally:
                # After a successful move of a new folder, tmp is gone and this is a no-op.
                with contextlib.suppress(OSError):
                    shutil.rmtree(tmp, dir_fd=parent_fd)
    finally:
        if dest_fd is not None:
            os.close(dest_fd)


@contextlib.contextmanager
def _fd(fd: int):  # type: ignore[no-untyped-def]
    try:
        yield fd
    finally:
        os.close(fd)


def _open_dest(parent_fd: int, name: str | None) -> int | None:
    """An fd of the existing destination folder, None if it does not exist yet."""
    if name is None:
        return os.dup(parent_fd)
    try:
        mode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISDIR(mode):
        raise Conflict(f"unzip: '{name}' exists and is not a folder; unzip into another dest "
                       "or remove it first", path=name)  # fmt: skip
    try:
        return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
    except OSError:  # swapped since: a link or a file now
        raise Conflict(
            f"unzip: '{name}' exists and is not a folder; unzip into another dest "
            "or remove it first",
            path=name,
        ) from None


def _moved(parent_fd: int, tmp: str, name: str | None) -> bool:
    """Rename the extracted folder to `name`; False if a folder appeared there meanwhile."""
    assert name is not None
    if _exists_at(parent_fd, name):
        return False
    try:
        os.rename(tmp, name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
        return True
    except OSError:
        if not _exists_at(parent_fd, name):
            raise
        return False


def _exists_at(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _open_archive(source: IO[bytes], archive_name: str) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(source)
    except (zipfile.BadZipFile, EOFError, ValueError, IsADirectoryError) as exc:
        raise InvalidRequest(
            f"unzip: '{archive_name}' is not a zip archive ({exc})", path=archive_name
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


def _check_private(layout: _Layout) -> None:
    """Extracting into the storage root: no entry may land in the private folder."""
    for parts in [*layout.files, *layout.dirs]:
        if is_private(parts[0]):
            shown = _shown("/".join(parts))
            raise InvalidRequest(
                f"unzip: entry '{shown}' would land in {PRIVATE}/, the engine's own folder",
                entry=shown,
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


def _check_existing(layout: _Layout, dest_fd: int, overwrite: bool) -> None:
    """Refuse, before writing, anything the archive cannot put into the existing destination."""
    for parts in sorted(layout.dirs):
        mode = _lmode(dest_fd, parts)
        # lstat: a symlink where a folder is needed is refused, never followed.
        if mode is not None and not stat.S_ISDIR(mode):
            raise _exists("/".join(parts), "and is not a folder")
    for parts in sorted(layout.files):
        mode = _lmode(dest_fd, parts)
        if mode is None:
            continue
        if stat.S_ISDIR(mode):
            raise _exists("/".join(parts), "and is a folder")
        if not overwrite:
            raise _exists("/".join(parts), "(pass overwrite to replace it)")


def _lmode(dest_fd: int, parts: _Parts) -> int | None:
    """The mode of `parts` below `dest_fd` (a link's own), None if it is not there.

    A prefix that is not a folder was refused already (prefixes sort first)."""
    fd = os.dup(dest_fd)
    try:
        for name in parts[:-1]:
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                return None
            os.close(fd)
            fd = child
        try:
            return os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return None
    finally:
        os.close(fd)


def _exists(relative: str, why: str) -> Conflict:
    shown = _shown(relative)
    option = "overwrite" if "overwrite" in why else None
    if option is None:  # a kind mismatch: overwrite would not help
        why += "; unzip into another dest, or remove it first"
    return Conflict(f"unzip: '{shown}' already exists in the destination {why}", path=shown,
                    **({"option": option} if option else {}))  # fmt: skip


class _Job:
    """One extraction: the archive, the limits and the running count of bytes written."""

    def __init__(
        self,
        zf: zipfile.ZipFile,
        archive_name: str,
        limits: UnzipLimits,
        progress: Progress | None,
        charge: Charge | None,
        modes: _Modes,
    ) -> None:
        self.zf, self.archive_name, self.limits = zf, archive_name, limits
        self.progress, self.charge, self.modes = progress, charge, modes
        self.written = 0

    def extract_all(self, plan: list[_Planned], tmp_fd: int) -> tuple[int, int]:
        for done, (info, parts) in enumerate(plan, 1):
            if info.is_dir():
                os.close(self._folder(tmp_fd, parts))
            else:
                folder = self._folder(tmp_fd, parts[:-1])
                try:
                    self._extract_file(info, folder, parts[-1])
                finally:
                    os.close(folder)
            if self.progress is not None:
                self.progress(done, self.written)
        return len(plan), self.written

    def _folder(self, tmp_fd: int, parts: _Parts) -> int:
        """An fd of `parts` below `tmp_fd`, made as needed, never through a link."""
        fd = os.dup(tmp_fd)
        try:
            for name in parts:
                with contextlib.suppress(FileExistsError):
                    make_dir(fd, name, self.modes.dir)
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError as exc:  # replaced by a link or a file behind our back
                    raise Conflict(
                        f"unzip: '{_shown(name)}' changed while it was extracted: "
                        f"{exc.strerror}; something else writes there: unzip again once it is done"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _extract_file(self, info: zipfile.ZipInfo, dir_fd: int, name: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            with (
                self.zf.open(info) as src,
                open(os.open(name, flags, self.modes.file, dir_fd=dir_fd), "wb") as out,
            ):
                os.fchmod(out.fileno(), _mode(self.modes.file, info))
                while chunk := src.read(_FILE_CHUNK):
                    self._count(len(chunk))
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            entry = _shown(info.orig_filename)
            raise InvalidRequest(
                f"unzip: '{self.archive_name}' is damaged at entry '{entry}' ({exc})", entry=entry
            ) from None

    def _count(self, size: int) -> None:
        self.written += size
        # Declared sizes were checked already, but only what is written is certain.
        if self.written > self.limits.max_total_size:
            raise PayloadTooLarge(
                f"unzip: the archive expands to more than the limit of "
                f"{self.limits.max_total_size} bytes",
                limit=self.limits.max_total_size,
            )
        if self.charge is not None:
            self.charge(size)


def _mode(file_mode: int, info: zipfile.ZipInfo) -> int:
    # Only the executable bits are taken from the archive (scripts stay runnable), where
    # the configured mode lets the same class read; setuid/setgid/sticky never are.
    mode = info.external_attr >> 16
    if info.create_system != 3 or not mode & 0o111:
        return file_mode
    return file_mode | (file_mode & 0o444) >> 2


def _merge(src_fd: int, dst_fd: int, overwrite: bool, prefix: str, charge: Charge | None) -> None:
    """Move what `src_fd` holds into `dst_fd`, folder by folder, by fds only."""
    for name in sorted(os.listdir(src_fd)):
        try:
            mode: int | None = os.stat(name, dir_fd=dst_fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        src_is_dir = stat.S_ISDIR(os.stat(name, dir_fd=src_fd, follow_symlinks=False).st_mode)
        if mode is None:
            os.rename(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
        elif src_is_dir:
            if not stat.S_ISDIR(mode):
                raise _exists(prefix + name, "and is not a folder")
            with (
                _fd(os.open(name, DIR_FLAGS, dir_fd=src_fd)) as src,
                _fd(_open_sub(dst_fd, name, prefix)) as dst,
            ):
                _merge(src, dst, overwrite, prefix + name + "/", charge)
        elif stat.S_ISDIR(mode) or not overwrite:
            raise _exists(prefix + name, "(pass overwrite to replace it)")
        else:
            old = os.stat(name, dir_fd=dst_fd, follow_symlinks=False)
            # rename swaps a symlink itself, never what it points to.
            os.replace(name, name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            if charge is not None and stat.S_ISREG(old.st_mode):
                charge(-old.st_size)


def _open_sub(dir_fd: int, name: str, prefix: str) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:
        raise _exists(prefix + name, "and is not a folder") from None


def _shown(name: str) -> str:
    name = name.replace("\x00", "\\0")
    return name if len(name) <= 200 else name[:200] + "..."
