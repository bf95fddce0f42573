"""The object service: files under the storage root, listed, moved, read and written."""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import stat
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from ..._exceptions import ApiError, Conflict, InvalidRequest, NotFound, RangeNotSatisfiable
from ..._limits import too_large
from ..._models import (
    ObjectChecksum,
    ObjectInfo,
    ObjectList,
    ObjectListing,
    ObjectMkdir,
    ObjectPath,
    ObjectProgress,
    ObjectRanges,
    ObjectRangesData,
    ObjectRead,
    ObjectRemove,
    ObjectRemoveMany,
    ObjectResult,
    ObjectResults,
    ObjectTransfer,
    ObjectWrite,
    ObjectZip,
)
from .._context import Context
from .._groups import task_group
from .._handlers import handles
from ._blob import Blob
from ._fds import Charged, closing, copy_fd, exists_at, has_entries, lstat_at, sha256_of
from ._listing import info_of, is_object, page
from ._paths import Storage, remove_tree
from ._quota import Quota, tree_size
from ._receive import Body, receive
from ._unzip import unzip_at
from ._walker import DIR_FLAGS, link_refused, make_dir, open_regular
from ._zip import UnzipLimits, stream_open_folder, zip_into

__all__ = ["ObjectService", "info_of"]

Parts = list[str]


def _missing(path: str) -> NotFound:
    return NotFound(f"no such file or directory: {path!r}", path=path)


class ObjectService:
    ranges_max = 8 << 20
    """Bytes one `objects.ranges` call may return in all (the engine sets it from config)."""

    def __init__(self, storage: Storage, quota: Quota, unzip_limits: UnzipLimits) -> None:
        self.storage = storage
        self.walker = storage.walker
        self.quota = quota
        self._unzip_limits = unzip_limits

    # -- helpers --------------------------------------------------------------------------

    def _info(self, parts: Parts, st: os.stat_result) -> ObjectInfo:
        return info_of("/".join(parts), parts[-1] if parts else self.storage.root.name, st)

    def existing(self, path: str) -> Parts:
        """The components of `path`, which must exist (a link itself counts)."""
        parts = self.storage.parts(path)
        self.walker.lstat(parts, path)
        return parts

    def stat(self, path: str) -> tuple[Parts, os.stat_result]:
        """The components of `path` and its stat; a link is refused, never followed."""
        parts = self.storage.parts(path)
        st = self.walker.lstat(parts, path)
        if stat.S_ISLNK(st.st_mode):
            raise link_refused(path, path)
        return parts, st

    def destination(self, path: str, overwrite: bool) -> Parts:
        """Where a new file goes: its folder is made; an existing one needs `overwrite`."""
        parts = self.storage.parts(path)
        if not parts:
            raise InvalidRequest("invalid path '': the storage root is not a file", path=path)
        with self.walker.parent(parts, path, create=True) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return parts
        if stat.S_ISDIR(st.st_mode):
            raise Conflict(f"{path!r} is a folder; write to a path inside it, or remove it first "
                           "(objects.remove with recursive)", path=path)  # fmt: skip
        if not overwrite:
            raise Conflict(f"{path!r} exists (pass overwrite to replace it)", path=path,
                           option="overwrite")  # fmt: skip
        return parts

    def commit(self, src_fd: int, src_name: str, parts: Parts, size: int) -> ObjectInfo:
        """Move a complete file (already counted in the quota) into place, atomically."""
        path = "/".join(parts)
        with self.walker.parent(parts, path, create=True) as (fd, name):
            old = lstat_at(fd, name)
            if old is not None and stat.S_ISDIR(old.st_mode):
                raise Conflict(f"{path!r} is a folder; write to a path inside it, or remove "
                               "it first (objects.remove with recursive)", path=path)  # fmt: skip
            # rename replaces the name itself: a link planted there is replaced, not followed.
            os.rename(src_name, name, src_dir_fd=src_fd, dst_dir_fd=fd)
            if old is not None and stat.S_ISREG(old.st_mode):
                self.quota.changed(-old.st_size)
            return self._info(parts, os.stat(name, dir_fd=fd, follow_symlinks=False))

    # -- reading --------------------------------------------------------------------------

    @handles("objects.info")
    def info(self, ctx: Context, request: ObjectPath) -> ObjectInfo:
        parts, st = self.stat(request.path)
        if not is_object(st.st_mode):
            raise InvalidRequest(f"{request.path!r} is not a regular file", path=request.path)
        return self._info(parts, st)

    @handles("objects.list")
    async def listing(self, ctx: Context, request: ObjectList) -> ObjectListing:
        parts, st = self.stat(request.path)
        if not stat.S_ISDIR(st.st_mode):
            one = self.info(ctx, ObjectPath(path=request.path))
            return ObjectListing(path=request.path, items=[one], total=1)
        # A folder of 100,000 files takes a while to read: never on the event loop.
        return await anyio.to_thread.run_sync(page, self.storage, parts, request)

    @handles("objects.checksum")
    async def checksum(self, ctx: Context, request: ObjectPath) -> ObjectChecksum:
        fd, st = self.walker.open_file(self.storage.parts(request.path), request.path)
        with closing(fd):
            digest = await anyio.to_thread.run_sync(sha256_of, fd)
        return ObjectChecksum(path=request.path, digest=digest, size=st.st_size)

    @handles("objects.read")
    def read(self, ctx: Context, request: ObjectRead) -> Blob:
        parts, st = self.stat(request.path)
        return self.blob(parts, st, request.start, request.end)

    def blob(self, parts: Parts, st: os.stat_result, start: int | None, end: int | None) -> Blob:
        path = "/".join(parts)
        if stat.S_ISDIR(st.st_mode):
            info = self._info(parts, st)
            name = (parts[-1] if parts else "storage") + ".zip"
            folder = self.walker.open_dir(parts, path)
            blob = Blob(info, name, "application/zip", folder_fd=folder)
            blob.generate = lambda: stream_open_folder(os.dup(folder), not parts)
            return blob
        # Opened now: the bytes sent are the stat'ed file's, whatever its name becomes.
        fd, st = self.walker.open_file(parts, path)
        blob = Blob(self._info(parts, st), parts[-1], "", fd=fd)
        size = st.st_size
        first = start or 0
        last = size if end is None else min(end, size)
        empty = size == 0 and first == 0
        if (
            (start is not None or end is not None)
            and (first >= size or first >= last)
            and not empty
        ):
            blob.close()
            raise RangeNotSatisfiable(
                f"range {first}-{end} is outside {path!r} ({size} bytes)", size=size
            )
        blob.media_type = mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
        blob.start, blob.end, blob.partial = first, last, start is not None or end is not None
        return blob

    @handles("objects.ranges")
    async def ranges(self, ctx: Context, request: ObjectRanges) -> ObjectRangesData:
        asked = sum(max(item.end - item.start, 0) for item in request.ranges)
        if asked > self.ranges_max:  # before a byte is read: the answer is held in memory
            raise too_large(f"ranges asking for {asked} bytes in one call", self.ranges_max,
                            "ranges_max_bytes")  # fmt: skip
        fds: dict[str, int] = {}
        try:
            for item in request.ranges:
                if item.path not in fds:
                    parts = self.storage.parts(item.path)
                    fds[item.path] = self.walker.open_file(parts, item.path)[0]

            def read_all() -> list[bytes]:
                return [
                    os.pread(fds[item.path], max(item.end - item.start, 0), item.start)
                    for item in request.ranges
                ]

            return ObjectRangesData(data=await anyio.to_thread.run_sync(read_all))
        finally:
            for fd in fds.values():
                os.close(fd)

    # -- writing --------------------------------------------------------------------------

    @handles("objects.write")
    async def write(self, ctx: Context, request: ObjectWrite, body: Body) -> ObjectInfo:
        parts = self.destination(request.path, request.overwrite)
        if request.size is not None:
            self.quota.check(request.size, path=request.path)
        return await self.receive_into(parts, body, request.path, request.checksum, request.size)

    async def receive_into(
        self, parts: Parts, body: Body, path: str, checksum: str | None, size: int | None
    ) -> ObjectInfo:
        """Stream `body` to a temp file and commit it only when complete and verified."""
        temp = self.storage.temp_name()
        digest = hashlib.sha256() if checksum else None
        with self.storage.temp_dir() as tmp:
            fd = self.storage.create_file(tmp, temp)
            try:
                try:
                    written = await receive(body, fd, self.quota, digest=digest, limit=size,
                                            path=path)  # fmt: skip
                finally:
                    os.close(fd)
                if size is not None and written != size:
                    raise InvalidRequest(
                        f"upload of {path!r} ended after {written} of {size} bytes", path=path
                    )
                if digest is not None and f"sha256:{digest.hexdigest()}" != checksum:
                    raise InvalidRequest(
                        f"checksum mismatch for {path!r}: got sha256:{digest.hexdigest()}, "
                        f"expected {checksum}",
                        path=path,
                    )
                return self.commit(tmp, temp, parts, written)
            except BaseException:
                self._discard(tmp, temp)
                raise

    def _discard(self, dir_fd: int, name: str) -> None:
        """Remove a temp file or folder and give its bytes back to the quota."""
        size = tree_size(dir_fd, name)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                remove_tree(dir_fd, name)
            else:
                os.unlink(name, dir_fd=dir_fd)
            self.quota.changed(-size)

    @handles("objects.mkdir")
    def mkdir(self, ctx: Context, request: ObjectMkdir) -> ObjectInfo:
        path = request.path
        parts = self.storage.parts(path)
        if not parts:
            return self._info(parts, os.stat(self.storage.root))
        try:
            folder = self.walker.open_dir(parts[:-1], path, create=request.parents)
        except NotFound:
            raise NotFound(f"the folder of {path!r} does not exist (pass parents)",
                           path=path, option="parents") from None  # fmt: skip
        with closing(folder) as fd:
            with contextlib.suppress(FileExistsError):
                make_dir(fd, parts[-1], self.storage.dir_mode)
            st = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise link_refused(path, path)
        if not stat.S_ISDIR(st.st_mode):
            raise Conflict(f"{path!r} exists and is a file; pick another folder name or remove "
                           "the file first", path=path)  # fmt: skip
        return self._info(parts, st)

    @handles("objects.remove")
    async def remove(self, ctx: Context, request: ObjectRemove) -> ObjectResult:
        return await self._remove(request.path, request.recursive)

    async def _remove(self, path: str, recursive: bool) -> ObjectResult:
        parts = self.existing(path)
        if not parts:
            raise InvalidRequest("the storage root cannot be removed", path=path)
        with self.walker.parent(parts, path) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _missing(path) from None
            if stat.S_ISDIR(st.st_mode):
                if not recursive and has_entries(fd, name):
                    raise Conflict(
                        f"{path!r} is a directory that is not empty (pass recursive)",
                        path=path,
                        option="recursive",
                    )
                size = (
                    await anyio.to_thread.run_sync(tree_size, fd, name) if self.quota.limit else 0
                )
                await anyio.to_thread.run_sync(remove_tree, fd, name)
            else:  # a file, or a link (removed itself, never what it points to)
                size = st.st_size if stat.S_ISREG(st.st_mode) else 0
                os.unlink(name, dir_fd=fd)
        self.quota.changed(-size)
        return ObjectResult(path=path, ok=True)

    @handles("objects.remove_many")
    async def remove_many(self, ctx: Context, request: ObjectRemoveMany) -> ObjectResults:
        results = []
        for path in request.paths:
            try:
                results.append(await self._remove(path, request.recursive))
            except ApiError as error:
                results.append(
                    ObjectResult(path=path, ok=False, code=error.code, error=error.message)
                )
        return ObjectResults(results=results)

    @handles("objects.move")
    def move(self, ctx: Context, request: ObjectTransfer) -> ObjectInfo:
        source = self.existing(request.src)
        if not source:
            raise InvalidRequest("the storage root cannot be moved", path=request.src)
        target = self._transfer_target(source, request)
        with (
            self.walker.parent(source, request.src) as (src_fd, src_name),
            self.walker.parent(target, request.dst, create=True) as (dst_fd, dst_name),
        ):
            try:
                if not request.overwrite and exists_at(dst_fd, dst_name):
                    raise Conflict(f"{request.dst!r} exists (pass overwrite)", path=request.dst,
                               option="overwrite")  # fmt: skip
                os.rename(src_name, dst_name, src_dir_fd=src_fd, dst_dir_fd=dst_fd)
            except OSError as exc:  # a folder onto a folder that is not empty
                raise Conflict(f"cannot move {request.src!r} onto {request.dst!r}: "
                               f"{exc.strerror}; remove it first or move into it", path=request.dst,
                               ) from None  # fmt: skip
            st = os.stat(dst_name, dir_fd=dst_fd, follow_symlinks=False)
        return self._info(target, st)

    @handles("objects.copy")
    async def copy(self, ctx: Context, request: ObjectTransfer) -> ObjectInfo:
        source, st = self.stat(request.src)
        target = self._transfer_target(source, request)
        temp = self.storage.temp_name("copy")
        with self.storage.temp_dir() as tmp:
            try:
                if stat.S_ISDIR(st.st_mode):
                    with closing(self.walker.open_dir(source, request.src)) as src:
                        size = await anyio.to_thread.run_sync(tree_size, src)
                        self.quota.reserve(size, path=request.dst)
                        make_dir(tmp, temp, self.storage.dir_mode)
                        await anyio.to_thread.run_sync(self._copytree, src, tmp, temp)
                    return self._install_tree(tmp, temp, target, request.dst, size)
                fd, st = self.walker.open_file(source, request.src)
                with closing(fd):
                    self.quota.reserve(st.st_size, path=request.dst)
                    out = self.storage.create_file(tmp, temp)
                    with closing(out):
                        await anyio.to_thread.run_sync(copy_fd, fd, out, st.st_size)
                return self.commit(tmp, temp, target, st.st_size)
            except BaseException:
                self._discard(tmp, temp)
                raise

    def _install_tree(self, tmp: int, temp: str, target: Parts, path: str, size: int) -> ObjectInfo:
        with self.walker.parent(target, path, create=True) as (fd, name):
            old = lstat_at(fd, name)
            if old is not None and stat.S_ISDIR(old.st_mode):
                freed = tree_size(fd, name)
                remove_tree(fd, name)
                self.quota.changed(-freed)
            os.rename(temp, name, src_dir_fd=tmp, dst_dir_fd=fd)
            return self._info(target, os.stat(name, dir_fd=fd, follow_symlinks=False))

    def _copytree(self, src: int, dst_parent: int, dst_name: str) -> None:
        """Copy the folder `src` into the new folder `dst_name`, by fds: links are skipped
        (never followed), and so are FIFOs and devices."""
        with closing(os.open(dst_name, DIR_FLAGS, dir_fd=dst_parent)) as dst:
            for name, is_dir, is_file in _entries(src):
                if is_dir:
                    try:
                        child = os.open(name, DIR_FLAGS, dir_fd=src)
                    except OSError:  # gone, or swapped for a link
                        continue
                    with closing(child):
                        make_dir(dst, name, self.storage.dir_mode)
                        self._copytree(child, dst, name)
                elif is_file:
                    try:
                        fd, st = open_regular(src, name, name)
                    except ApiError:
                        continue
                    with closing(fd), closing(self.storage.create_file(dst, name)) as out:
                        copy_fd(fd, out, st.st_size)

    def _transfer_target(self, source: Parts, request: ObjectTransfer) -> Parts:
        target = self.storage.parts(request.dst)
        if not target:
            raise InvalidRequest("the storage root cannot be replaced", path=request.dst)
        if target[: len(source)] == source:
            raise InvalidRequest(f"cannot put {request.src!r} inside itself", path=request.dst)
        source_dir = stat.S_ISDIR(self.walker.lstat(source, request.src).st_mode)
        with self.walker.parent(target, request.dst, create=True) as (fd, name):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return target
        if not request.overwrite:
            raise Conflict(f"{request.dst!r} exists (pass overwrite)", path=request.dst,
                               option="overwrite")  # fmt: skip
        if stat.S_ISDIR(st.st_mode) != source_dir:
            raise Conflict(f"{request.dst!r} exists and is not the same kind (a file against a "
                           "folder); remove it first or pick another destination",
                           path=request.dst)  # fmt: skip
        return target

    # -- archives -------------------------------------------------------------------------

    @handles("objects.zip")
    async def zip(self, ctx: Context, request: ObjectZip) -> AsyncIterator[ObjectProgress]:
        source, st = self.stat(request.path)
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidRequest(f"zip: {request.path!r} is not a folder", path=request.path)
        dest_path = request.dest or (request.path.rstrip("/") + ".zip")
        dest = self.destination(dest_path, request.overwrite)
        temp = self.storage.temp_name("zip")
        replaced = self._identity(dest, dest_path)
        with self.storage.temp_dir() as tmp:
            try:
                out = os.fdopen(self.storage.create_file(tmp, temp), "wb")

                def work(progress: Callable[[int, int], None]) -> tuple[int, int]:
                    done = [0, 0]

                    def step(entries: int, size: int) -> None:
                        done[:] = [entries, size]
                        progress(entries, size)

                    with out:
                        zip_into(self.walker, source, Charged(out, self.quota, dest_path),
                                 replaced, step)  # fmt: skip
                    return done[0], done[1]

                async for event in _progress("zipping", request.path, dest_path, work):
                    if event.action == "done":
                        self.commit(tmp, temp, dest, 0)
                    yield event
            except BaseException:
                self._discard(tmp, temp)
                raise

    def _identity(self, parts: Parts, path: str) -> tuple[int, int] | None:
        try:
            st = self.walker.lstat(parts, path)
        except NotFound:
            return None
        return (st.st_dev, st.st_ino)

    @handles("objects.unzip")
    async def unzip(self, ctx: Context, request: ObjectZip) -> AsyncIterator[ObjectProgress]:
        default = (
            request.path[:-4] if request.path.lower().endswith(".zip") else request.path + ".d"
        )
        dest_path = request.dest or default
        dest = self.storage.parts(dest_path)
        archive_parts, _ = self.stat(request.path)  # a missing archive is refused up front
        limits = self._unzip_limits
        if self.quota.limit is not None:
            free = max(self.quota.limit - self.quota.used, 0)
            limits = UnzipLimits(
                limits.max_entries, min(limits.max_total_size, free), limits.max_ratio
            )
        charged = [0]

        def charge(size: int) -> None:
            self.quota.reserve(size, path=dest_path)
            charged[0] += size

        def work(progress: Callable[[int, int], None]) -> tuple[int, int]:
            args = (limits, request.overwrite, progress, charge, self._modes)
            archive, _ = self.walker.open_file(archive_parts, request.path)
            with os.fdopen(archive, "rb") as source:
                if not dest:  # into the storage root itself
                    with closing(self.walker.open_root()) as root:
                        return unzip_at(source, request.path, root, None, *args)
                with self.walker.parent(dest, dest_path) as (fd, name):
                    return unzip_at(source, request.path, fd, name, *args)

        try:
            async for event in _progress("unzipping", request.path, dest_path, work):
                yield event
        except BaseException:
            self.quota.changed(-charged[0])  # extraction left nothing behind
            raise

    @property
    def _modes(self) -> tuple[int, int]:
        return self.storage.file_mode, self.storage.dir_mode


async def _progress(
    action: Any, path: str, dest: str, work: Callable[[Callable[[int, int], None]], tuple[int, int]]
) -> AsyncIterator[ObjectProgress]:
    """Run blocking `work` in a thread and yield its progress as events, then `done`."""
    send, receive_ = anyio.create_memory_object_stream[ObjectProgress](64)

    def progress(entries: int, size: int) -> None:
        event = ObjectProgress(action=action, path=path, entries=entries, bytes=size, dest=dest)
        with contextlib.suppress(anyio.BrokenResourceError):  # the reader left
            anyio.from_thread.run(send.send, event)

    result: list[tuple[int, int]] = []

    async def run() -> None:
        async with send:
            result.append(await anyio.to_thread.run_sync(work, progress))

    async with task_group() as group:
        group.start_soon(run)
        async with receive_:
            async for event in receive_:
                yield event
    entries, size = result[0]
    yield ObjectProgress(action="done", path=path, entries=entries, bytes=size, dest=dest)


def _entries(fd: int) -> list[tuple[str, bool, bool]]:
    """Names in folder `fd`, and whether each is a folder or a file (links are neither)."""
    with os.scandir(fd) as entries:
        return [
            (e.name, e.is_dir(follow_symlinks=False), e.is_file(follow_symlinks=False))
            for e in entries
        ]
