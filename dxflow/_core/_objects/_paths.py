"""The storage root: which user paths are acceptable, and the walker that reaches them.

Every object feature (listing, transfer, archives, share links, uploads) turns user paths
into components here and reaches them only through `Storage.walker` (see _walker.py): a
path is relative to the storage root, uses `/`, and may not climb out of it by any means:
`..`, an absolute path, a symlink (never followed, wherever it leads), a NUL byte, a
backslash (a Windows separator in disguise), or a name longer than the filesystem allows.
The engine's private folder `.dxflow/` (and any name that case-folds or normalises to it)
is out of reach of every operation. Each refusal is an InvalidRequest naming the path.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

from ..._exceptions import InvalidRequest, NotFound
from ._quota import tree_size
from ._walker import Walker, link_refused

__all__ = ["PRIVATE", "Storage", "is_private", "parse_mode", "remove_tree"]

PRIVATE = ".dxflow"
"""The engine's own folder in the storage root (partial uploads, temp files)."""

STALE_TEMP = 24 * 3600.0
"""A temp file untouched this long was left by an engine that died mid-transfer: a live
transfer writes to its file every few MiB, and a stalled client is long gone by then."""

_MAX_NAME = 255
_MAX_PATH = 4096


def _refuse(path: str, why: str) -> InvalidRequest:
    shown = path if len(path) <= 200 else path[:200] + "..."
    return InvalidRequest(f"invalid path {shown!r}: {why}", path=shown)


def parse_mode(text: str | int, setting: str, owner: int) -> int:
    """A permission mode written in octal (`"0600"`, `"640"`, `"0o644"`), refusing bits
    beyond 0777 and modes that deny the owner (the engine) `owner` (rw-, or rwx)."""
    raw = str(text).strip().lower().removeprefix("0o")
    try:
        mode = text if isinstance(text, int) else int(raw, 8)
    except ValueError:
        raise ValueError(f"{setting} {text!r} is not an octal mode (e.g. 0600)") from None
    if mode & ~0o777:
        raise ValueError(f"{setting} {text!r}: only permission bits (at most 0777) are allowed")
    if mode & owner != owner:
        raise ValueError(f"{setting} {text!r} must give the owner at least 0{owner:o}")
    return mode


def is_private(name: str) -> bool:
    """`name` is the private folder, or would be on a case-insensitive or normalising
    filesystem (`.DXFLOW`, a full-width dot, trailing dots or spaces as Windows drops)."""
    folded = unicodedata.normalize("NFKC", name).casefold().rstrip(" .")
    return folded == PRIVATE


class Storage:
    """The storage root, the confinement of user paths to it, and its private folder."""

    def __init__(self, root: Path, file_mode: int = 0o600, dir_mode: int = 0o700) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()
        self.file_mode = file_mode
        self.dir_mode = dir_mode
        self.walker = Walker(str(self.root), dir_mode)
        self.private = self.root / PRIVATE
        own = Walker(str(self.root), 0o700)  # the engine's own folders: never wider
        for folder in ("tmp", "uploads"):  # made by fds: a planted link is refused
            os.close(own.open_dir([PRIVATE, folder], f"{PRIVATE}/{folder}", create=True))
        self.sweep_temp(STALE_TEMP)

    # -- user paths -------------------------------------------------------------------------

    def parts(self, path: str) -> list[str]:
        """The checked components of `path` ("" and "." mean the root)."""
        if "\x00" in path:
            raise _refuse(path.replace("\x00", "\\0"), "contains a NUL byte")
        if "\\" in path:
            raise _refuse(path, "contains a backslash; use / between names")
        if path.startswith("/"):
            raise _refuse(path, "is absolute; paths are relative to the storage root")
        if len(path.encode("utf-8", "surrogateescape")) > _MAX_PATH:
            raise _refuse(path, f"is longer than {_MAX_PATH} bytes")
        parts = [part for part in path.split("/") if part not in ("", ".")]
        for part in parts:
            if part == "..":
                raise _refuse(path, "'..' would leave the storage root")
            if len(part.encode("utf-8", "surrogateescape")) > _MAX_NAME:
                raise _refuse(path, f"a name is longer than {_MAX_NAME} bytes")
        if parts and is_private(parts[0]):
            raise _refuse(path, f"{PRIVATE}/ is the engine's own folder")
        return parts

    def resolve(self, path: str) -> Path:
        """The file `path` names, for code outside the object store that needs a name
        (a shell's recording). Every existing component is checked not to be a link;
        the store itself never opens what this returns (it walks from fds)."""
        parts = self.parts(path)
        if parts:
            with contextlib.suppress(NotFound):
                if stat.S_ISLNK(self.walker.lstat(parts, path).st_mode):
                    raise link_refused(path, path)
        return self.root.joinpath(*parts)

    def relative(self, target: Path) -> str:
        """The user-facing path of a file under the root."""
        return target.relative_to(self.root).as_posix() if target != self.root else ""

    # -- the private folder -----------------------------------------------------------------

    def private_dir(self, name: str) -> int:
        """An fd of `.dxflow/<name>` (tmp or uploads), walked like any other path."""
        return self.walker.open_dir([PRIVATE, name], f"{PRIVATE}/{name}")

    @contextlib.contextmanager
    def temp_dir(self) -> Iterator[int]:
        fd = self.private_dir("tmp")
        try:
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def temp_name(hint: str = "part") -> str:
        """A fresh name for the private temp folder (same filesystem: rename is atomic)."""
        return f"{hint}-{os.urandom(8).hex()}"

    def create_file(self, dir_fd: int, name: str, append: bool = False) -> int:
        """Open `name` in `dir_fd` for writing (created with the configured file mode)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        flags |= os.O_APPEND if append else os.O_TRUNC
        fd = os.open(name, flags, self.file_mode, dir_fd=dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise InvalidRequest(f"{name!r} is not a regular file")
            if stat.S_IMODE(st.st_mode) != self.file_mode:
                os.fchmod(fd, self.file_mode)  # the configured mode, whatever the umask
        except BaseException:
            os.close(fd)
            raise
        return fd

    def sweep_temp(self, older_than: float, freed: Callable[[int], object] | None = None) -> int:
        """Remove temp files not written for `older_than` seconds; return how many.

        Not everything there: another engine process on the same home (an in-process
        `Engine()` beside a booted one) may be writing the fresh ones. `freed(bytes)` is
        told what each removal gave back (the quota, once it has counted them).
        """
        cutoff, removed = time.time() - older_than, 0
        with self.temp_dir() as fd, os.scandir(fd) as entries:
            for entry in entries:
                try:
                    if entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                        continue
                    size = tree_size(fd, entry.name) if freed is not None else 0
                    if entry.is_dir(follow_symlinks=False):
                        remove_tree(fd, entry.name)
                    else:
                        os.unlink(entry.name, dir_fd=fd)
                    removed += 1
                    if freed is not None:
                        freed(size)
                except FileNotFoundError:  # its owner finished with it meanwhile
                    continue
        return removed


def remove_tree(dir_fd: int, name: str) -> None:
    """rmtree of `name` in `dir_fd`: shutil walks it by fds and never follows a link."""
    shutil.rmtree(name, dir_fd=dir_fd)
