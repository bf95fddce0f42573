"""The one path walker: every file under the storage root is reached from a directory fd.

A path checked once and then used by name can be redirected between the check and the
use: a container that can write into storage swaps a folder for a symlink and the engine
follows it out of the root. So no name is ever looked up from `/`. Each operation opens
the root, then walks one component at a time with O_NOFOLLOW (or lets the kernel do the
same walk in one `openat2` call with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where it has
it), and creates, renames, removes and stats relative to the fds it holds. A symlink met
on the way is refused, whatever it points to; the last name of a path is never followed
either (stat and open use follow_symlinks=False / O_NOFOLLOW).

Errors name the path and, for a link, the component that is one.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import platform
import stat
from collections.abc import Callable, Iterator, Sequence

from ..._exceptions import Conflict, InvalidRequest, NotFound, PermissionDenied

__all__ = [
    "DIR_FLAGS",
    "Walker",
    "link_refused",
    "make_dir",
    "open_handle",
    "open_regular",
    "openat2_available",
]

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_RESOLVE = 0x08 | 0x04 | 0x02  # RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_OPENAT2 = {"x86_64": 437, "aarch64": 437}  # the generic syscall table numbers it 437 too


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_openat2() -> Callable[[int, str, int, int], int] | None:
    """openat2(2) through libc's syscall(), or None where the kernel (or seccomp) lacks it."""
    number = _OPENAT2.get(platform.machine())
    if number is None:
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        syscall = libc.syscall
    except (OSError, AttributeError):
        return None
    syscall.restype = ctypes.c_long

    def openat2(dir_fd: int, path: str, flags: int, mode: int) -> int:
        how = _OpenHow(flags | os.O_CLOEXEC, mode, _RESOLVE)
        name = os.fsencode(path)
        fd = syscall(ctypes.c_long(number), ctypes.c_int(dir_fd), ctypes.c_char_p(name),
                     ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))  # fmt: skip
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return int(fd)

    try:  # a probe: ENOSYS on old kernels, EPERM under some seccomp profiles
        root = os.open("/", DIR_FLAGS)
        try:
            os.close(openat2(root, ".", os.O_RDONLY | os.O_DIRECTORY, 0))
        finally:
            os.close(root)
    except OSError:
        return None
    return openat2


_openat2 = _load_openat2()
_PROC_FD = os.path.isdir("/proc/self/fd")


def openat2_available() -> bool:
    return _openat2 is not None


def _shown(path: str) -> str:
    return path if len(path) <= 200 else path[:200] + "..."


def link_refused(path: str, link: str) -> InvalidRequest:
    return InvalidRequest(
        f"invalid path {_shown(path)!r}: {_shown(link)!r} is a symbolic link; links in "
        "storage are never followed (one may lead outside the storage root)",
        path=_shown(path),
    )


def unreadable(path: str, what: str) -> PermissionDenied:
    # Not the key's permission: the file's own mode (set by whatever wrote it, a
    # container perhaps) keeps the engine's OS user out. A 403 that says so, not a 500.
    return PermissionDenied(
        f"{_shown(what)!r} cannot be opened by the engine (its mode forbids it; "
        f"in {_shown(path)!r})",
        path=_shown(path),
    )


def _missing(path: str) -> NotFound:
    return NotFound(f"no such file or directory: {_shown(path)!r}", path=_shown(path))


def make_dir(dir_fd: int, name: str, mode: int) -> None:
    """mkdir `name` in `dir_fd` with exactly `mode`, whatever the umask (FileExistsError
    if it is there). The mode is set through an fd of the new folder, never by name."""
    os.mkdir(name, mode, dir_fd=dir_fd)
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except OSError:  # swapped already: whatever is there now is not ours to chmod
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def open_regular(dir_fd: int, name: str, path: str) -> tuple[int, os.stat_result]:
    """Open the regular file `name` in `dir_fd` for reading, never a link, FIFO or device.

    The kind is checked before opening (a device is never opened, a FIFO never waited on)
    and again on the opened fd, which must be the very inode that was checked.
    """
    try:
        before = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(path) from None
    _check_regular(before, path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise link_refused(path, path) from None
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise _missing(path) from None
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise unreadable(path, path) from None
        raise
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise Conflict(f"{_shown(path)!r} was replaced while it was opened; try again",
                       path=_shown(path))  # fmt: skip
    return fd, st


def _check_regular(st: os.stat_result, path: str) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    if stat.S_ISDIR(st.st_mode):
        raise InvalidRequest(f"{_shown(path)!r} is a directory", path=_shown(path))
    if stat.S_ISLNK(st.st_mode):
        raise link_refused(path, path)
    raise InvalidRequest(f"{_shown(path)!r} is not a regular file", path=_shown(path))


class Walker:
    """Walks user paths (already split into checked components) below one root folder."""

    def __init__(self, root: str, dir_mode: int = 0o700) -> None:
        self.root = root
        self.dir_mode = dir_mode

    def open_root(self) -> int:
        # The root's own path is the operator's: it is the one name looked up from `/`.
        return os.open(self.root, DIR_FLAGS)

    def open_dir(self, parts: Sequence[str], path: str, create: bool = False) -> int:
        """An fd of the folder `parts` (made, with its parents, if `create`)."""
        root = self.open_root()
        if not parts:
            return root
        try:
            if _openat2 is not None and not create:
                with contextlib.suppress(OSError):
                    return _openat2(root, "/".join(parts), DIR_FLAGS, 0)
                # Refused or missing: walk it again to say which component and why.
            return self._walk(root, parts, path, create)
        finally:
            os.close(root)

    def _walk(self, fd: int, parts: Sequence[str], path: str, create: bool) -> int:
        """Descend from `fd` (not consumed) one component at a time; return the last fd."""
        current = os.dup(fd)
        try:
            for index, name in enumerate(parts):
                child = self._step(current, name, parts[: index + 1], path, create)
                os.close(current)
                current = child
        except BaseException:
            os.close(current)
            raise
        return current

    def _step(self, fd: int, name: str, done: Sequence[str], path: str, create: bool) -> int:
        # Several tries: mkdir races with a concurrent rmdir, and a folder swapped for a
        # link and back between the open and the look at what refused it is tried again.
        for _ in range(8):
            try:
                return os.open(name, DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise _missing(path) from None
            except OSError as exc:
                refusal = self._refusal(exc, fd, name, done, path)
                if refusal is not None:
                    raise refusal from None
                continue
            with contextlib.suppress(FileExistsError):
                make_dir(fd, name, self.dir_mode)
        raise Conflict(f"{_shown(path)!r} keeps changing while it is opened; try again",
                       path=_shown(path))  # fmt: skip

    def _refusal(
        self, exc: OSError, fd: int, name: str, done: Sequence[str], path: str
    ) -> Exception | None:
        """Why `name` could not be entered as a folder; None if it is one again now."""
        what = "/".join(done)
        if exc.errno in (errno.EACCES, errno.EPERM):
            return unreadable(path, what)
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            return exc
        try:
            mode = os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode
        except FileNotFoundError:
            return _missing(path)
        if stat.S_ISLNK(mode):
            return link_refused(path, what)
        if stat.S_ISDIR(mode):
            return None
        return Conflict(
            f"{_shown(what)!r} is a file, not a folder (in {_shown(path)!r}); pick a path "
            "whose parents are folders, or remove the file first",
            path=_shown(path),
        )

    @contextlib.contextmanager
    def parent(
        self, parts: Sequence[str], path: str, create: bool = False
    ) -> Iterator[tuple[int, str]]:
        """The fd of the folder holding `parts[-1]`, and that name (`parts` not empty)."""
        fd = self.open_dir(parts[:-1], path, create)
        try:
            yield fd, parts[-1]
        finally:
            os.close(fd)

    def lstat(self, parts: Sequence[str], path: str) -> os.stat_result:
        """The entry `parts` itself (a link is reported as a link, never followed)."""
        if not parts:
            return os.stat(self.root)
        with self.parent(parts, path) as (fd, name):
            try:
                return os.stat(name, dir_fd=fd, follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                raise _missing(path) from None

    def open_file(self, parts: Sequence[str], path: str) -> tuple[int, os.stat_result]:
        """A read fd of the regular file `parts`, and its stat."""
        if not parts:
            raise InvalidRequest("the storage root is a directory", path=path)
        if _openat2 is not None and _PROC_FD:
            # One kernel walk to an O_PATH handle (opening it has no effect on a device
            # or a FIFO), then the very inode it names is opened for reading.
            root = self.open_root()
            try:
                handle = _openat2(root, "/".join(parts), os.O_PATH | os.O_NOFOLLOW, 0)
            except OSError:
                handle = -1  # the walk below says what is wrong
            finally:
                os.close(root)
            if handle >= 0:
                try:
                    st = os.fstat(handle)
                    _check_regular(st, path)
                    flags = os.O_RDONLY | os.O_CLOEXEC
                    return os.open(f"/proc/self/fd/{handle}", flags), st
                except PermissionError:
                    raise unreadable(path, path) from None
                finally:
                    os.close(handle)
        with self.parent(parts, path) as (fd, name):
            return open_regular(fd, name, path)


def open_handle(root: str, parts: Sequence[str], path: str) -> int:
    """An O_PATH fd of the entry `parts` beneath the folder `root`: the entry itself (a
    link there is opened as the link, never followed), reached without following a link
    on the way. The caller looks at what it is with fstat and closes it.

    For what must be used by name and not by an open fd (a unix socket is connected to
    by path): `/proc/self/fd/N` of this handle names the very inode it holds, so a path
    swapped after this call cannot redirect the use.
    """
    if not parts:
        raise InvalidRequest(f"{_shown(path)!r} is a folder", path=_shown(path))
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    walker = Walker(root)
    if _openat2 is not None:
        fd = walker.open_root()
        try:
            with contextlib.suppress(OSError):  # refused or missing: the walk says why
                return _openat2(fd, "/".join(parts), flags, 0)
        finally:
            os.close(fd)
    with walker.parent(parts, path) as (fd, name):
        try:
            return os.open(name, flags, dir_fd=fd)
        except (FileNotFoundError, NotADirectoryError):
            raise _missing(path) from None
