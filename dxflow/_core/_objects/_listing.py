"""Listing folders by fds: entries found with scandir, the page stat'ed without following."""

from __future__ import annotations

import fnmatch
import os
import stat

from ..._exceptions import ApiError
from ..._models import ObjectInfo, ObjectList, ObjectListing
from ._fds import closing
from ._paths import PRIVATE, Storage
from ._walker import DIR_FLAGS

__all__ = ["info_of", "is_object", "page"]

Entry = tuple[tuple[str, ...], str]
"""An entry found: its folder (relative to the listed one) and its name."""


def etag_of(st: os.stat_result) -> str:
    # A commit is a rename: a new inode and mtime, so the tag changes with the content.
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def info_of(path: str, name: str, st: os.stat_result) -> ObjectInfo:
    from datetime import UTC, datetime

    is_dir = stat.S_ISDIR(st.st_mode)
    return ObjectInfo(
        path=path,
        name=name,
        type="directory" if is_dir else "file",
        size=0 if is_dir else st.st_size,
        modified=datetime.fromtimestamp(st.st_mtime, UTC),
        etag=None if is_dir else etag_of(st),
    )


def is_object(mode: int) -> bool:
    """A file or a folder: what a listing shows. Links, FIFOs and devices are never
    reported, and never through what a link points to."""
    return stat.S_ISREG(mode) or stat.S_ISDIR(mode)


def page(storage: Storage, parts: list[str], request: ObjectList) -> ObjectListing:
    """The entries of folder `parts` (to `request.depth`), sorted, then one page stat'ed."""
    with closing(storage.walker.open_dir(parts, request.path)) as fd:
        entries = _walk(fd, (), request, not parts)
    entries.sort()
    end = None if request.limit is None else request.offset + request.limit
    chosen = entries[request.offset : end]
    by_folder: dict[tuple[str, ...], list[str]] = {}
    for folder, name in chosen:  # only the page is stat'ed, each folder opened once
        by_folder.setdefault(folder, []).append(name)
    found: dict[Entry, ObjectInfo] = {}
    for folder, names in by_folder.items():
        found.update(_stat_names(storage, parts, folder, names, request.path))
    items = [found[entry] for entry in chosen if entry in found]
    return ObjectListing(path=request.path, items=items, total=len(entries))


def _stat_names(
    storage: Storage, base: list[str], folder: tuple[str, ...], names: list[str], path: str
) -> dict[Entry, ObjectInfo]:
    out: dict[Entry, ObjectInfo] = {}
    try:
        fd = storage.walker.open_dir([*base, *folder], path)
    except ApiError:  # removed, or swapped for a link, meanwhile
        return out
    with closing(fd):
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError:  # removed meanwhile
                continue
            if is_object(st.st_mode):
                out[(folder, name)] = info_of("/".join([*base, *folder, name]), name, st)
    return out


def _walk(fd: int, prefix: tuple[str, ...], request: ObjectList, at_root: bool) -> list[Entry]:
    found: list[Entry] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            name = entry.name
            if (at_root and not prefix and name == PRIVATE) or (
                not request.hidden and name.startswith(".")
            ):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and not entry.is_file(follow_symlinks=False):
                continue  # a link, a FIFO, a device: not an object
            if request.pattern is None or fnmatch.fnmatch(name, request.pattern):
                found.append((prefix, name))
            if len(prefix) + 1 < request.depth and is_dir:
                try:
                    child = os.open(name, DIR_FLAGS, dir_fd=fd)
                except OSError:  # removed, or swapped for a link, since it was listed
                    continue
                with closing(child):
                    found.extend(_walk(child, (*prefix, name), request, at_root))
    return found
