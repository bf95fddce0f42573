"""The object service: files under the storage root, listed, moved, read and written."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import mimetypes
import os
import shutil
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
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
from ._blob import CHUNK, Blob
from ._paths import PRIVATE, Storage
from ._quota import Quota, tree_size
from ._receive import Body, receive
from ._zip import UnzipLimits, unzip, zip_stream, zip_to_file

__all__ = ["ObjectService", "info_of"]


def etag_of(stat: os.stat_result) -> str:
    # A commit is a rename: a new inode and mtime, so the tag changes with the content.
    return f'"{stat.st_ino:x}-{stat.st_size:x}-{stat.st_mtime_ns:x}"'


def info_of(storage: Storage, target: Path, stat: os.stat_result | None = None) -> ObjectInfo:
    stat = stat or target.stat()
    is_dir = os.path.isdir(target) if stat is None else (stat.st_mode & 0o170000) == 0o040000
    return ObjectInfo(
        path=storage.relative(target),
        name=target.name,
        type="directory" if is_dir else "file",
        size=0 if is_dir else stat.st_size,
        modified=datetime.fromtimestamp(stat.st_mtime, UTC),
        etag=None if is_dir else etag_of(stat),
    )


def _missing(path: str) -> NotFound:
    return NotFound(f"no such file or directory: {path!r}", path=path)


class ObjectService:
    ranges_max = 8 << 20
    """Bytes one `objects.ranges` call may return in all (the engine sets it from config)."""

    def __init__(self, storage: Storage, quota: Quota, unzip_limits: UnzipLimits) -> None:
        self.storage = storage
        self.quota = quota
        self._unzip_limits = unzip_limits

    # -- helpers --------------------------------------------------------------------------

    def existing(self, path: str) -> Path:
        target = self.storage.resolve(path)
        if not os.path.lexists(target):
            raise _missing(path)
        return target

    def stat(self, path: str) -> tuple[Path, os.stat_result]:
        target = self.storage.resolve(path)
        try:
            return target, target.stat()
        except FileNotFoundError:
            raise _missing(path) from None
        except NotADirectoryError:
            raise _missing(path) from None

    def destination(self, path: str, overwrite: bool) -> Path:
        """Where a new file goes: its folder is made; an existing one needs `overwrite`."""
        target = self.storage.resolve(path)
        if target == self.storage.root:
            raise InvalidRequest("invalid path '': the storage root is not a file", path=path)
        if os.path.isdir(target):
            raise Conflict(f"{path!r} is a directory", path=path)
        if os.path.lexists(target) and not overwrite:
            raise Conflict(f"{path!r} exists (pass overwrite to replace it)", path=path)
        parent = target.parent
        if parent.exists() and not parent.is_dir():
            raise Conflict(f"{self.storage.relative(parent)!r} is a file, not a folder", path=path)
        parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self, temp: Path, target: Path, size: int) -> ObjectInfo:
        """Move a complete temp file into place, atomically, and count it in the quota."""
        old = target.stat().st_size if target.is_file() else 0
        os.chmod(temp, 0o644)
        os.replace(temp, target)
        self.quota.changed(size - old)
        return info_of(self.storage, target)

    # -- reading --------------------------------------------------------------------------

    @handles("objects.info")
    def info(self, ctx: Context, request: ObjectPath) -> ObjectInfo:
        target, stat = self.stat(request.path)
        return info_of(self.storage, target, stat)

    @handles("objects.list")
    async def listing(self, ctx: Context, request: ObjectList) -> ObjectListing:
        target, _ = self.stat(request.path)
        if not os.path.isdir(target):
            return ObjectListing(path=request.path, items=[info_of(self.storage, target)], total=1)
        # A folder of 100,000 files takes a while to read: never on the event loop.
        return await anyio.to_thread.run_sync(self._page, target, request)

    def _page(self, target: Path, request: ObjectList) -> ObjectListing:
        entries = self._walk(target, request.depth, request.hidden, request.pattern)
        entries.sort(key=lambda entry: entry.path)
        end = None if request.limit is None else request.offset + request.limit
        items = []
        for entry in entries[request.offset : end]:  # only the page is stat'ed
            try:
                items.append(info_of(self.storage, Path(entry.path), entry.stat()))
            except OSError:  # removed meanwhile, or a dangling symlink
                continue
        return ObjectListing(path=request.path, items=items, total=len(entries))

    def _walk(
        self, folder: Path, depth: int, hidden: bool, pattern: str | None
    ) -> list[os.DirEntry[str]]:
        found: list[os.DirEntry[str]] = []
        skip = PRIVATE if folder == self.storage.root else None
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name == skip or (not hidden and name.startswith(".")):
                    continue
                if pattern is None or fnmatch.fnmatch(name, pattern):
                    found.append(entry)
                if depth > 1 and entry.is_dir(follow_symlinks=False):
                    found.extend(self._walk(Path(entry.path), depth - 1, hidden, pattern))
        return found

    @handles("objects.checksum")
    async def checksum(self, ctx: Context, request: ObjectPath) -> ObjectChecksum:
        target, stat = self.stat(request.path)
        if os.path.isdir(target):
            raise InvalidRequest(f"{request.path!r} is a directory", path=request.path)
        digest = await self.checksum_of(target)
        return ObjectChecksum(path=request.path, digest=digest, size=stat.st_size)

    async def checksum_of(self, target: Path) -> str:
        def digest() -> str:
            hasher = hashlib.sha256()
            with target.open("rb") as reader:
                while data := reader.read(CHUNK):
                    hasher.update(data)
            return hasher.hexdigest()

        return await anyio.to_thread.run_sync(digest)

    @handles("objects.read")
    def read(self, ctx: Context, request: ObjectRead) -> Blob:
        target, stat = self.stat(request.path)
        return self.blob(target, stat, request.start, request.end)

    def blob(self, target: Path, stat: os.stat_result, start: int | None, end: int | None) -> Blob:
        info = info_of(self.storage, target, stat)
        if info.type == "directory":
            name = (target.name or "storage") + ".zip"
            root = self.storage.root
            return Blob(info, name, "application/zip", generate=lambda: zip_stream(root, target))
        media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        size = stat.st_size
        first = start or 0
        last = size if end is None else min(end, size)
        empty = size == 0 and first == 0
        if (
            (start is not None or end is not None)
            and (first >= size or first >= last)
            and not empty
        ):
            raise RangeNotSatisfiable(
                f"range {first}-{end} is outside {info.path!r} ({size} bytes)", size=size
            )
        partial = start is not None or end is not None
        return Blob(info, target.name, media, path=target, start=first, end=last, partial=partial)

    @handles("objects.ranges")
    async def ranges(self, ctx: Context, request: ObjectRanges) -> ObjectRangesData:
        asked = sum(max(item.end - item.start, 0) for item in request.ranges)
        if asked > self.ranges_max:  # before a byte is read: the answer is held in memory
            raise too_large(f"ranges asking for {asked} bytes in one call", self.ranges_max,
                            "ranges_max_bytes")  # fmt: skip
        targets = {item.path: self.stat(item.path)[0] for item in request.ranges}

        def read_all() -> list[bytes]:
            fds: dict[str, int] = {}
            try:
                out = []
                for item in request.ranges:
                    if item.path not in fds:
                        fds[item.path] = os.open(targets[item.path], os.O_RDONLY)
                    length = max(item.end - item.start, 0)
                    out.append(os.pread(fds[item.path], length, item.start))
                return out
            except IsADirectoryError:
                raise InvalidRequest("ranges: one of the paths is a directory") from None
            finally:
                for fd in fds.values():
                    os.close(fd)

        return ObjectRangesData(data=await anyio.to_thread.run_sync(read_all))

    # -- writing --------------------------------------------------------------------------

    @handles("objects.write")
    async def write(self, ctx: Context, request: ObjectWrite, body: Body) -> ObjectInfo:
        target = self.destination(request.path, request.overwrite)
        if request.size is not None:
            self.quota.check(request.size, path=request.path)
        return await self.receive_into(target, body, request.path, request.checksum, request.size)

    async def receive_into(
        self, target: Path, body: Body, path: str, checksum: str | None, size: int | None
    ) -> ObjectInfo:
        """Stream `body` to a temp file and commit it only when complete and verified."""
        temp = self.storage.temp_path()
        digest = hashlib.sha256() if checksum else None
        try:
            written = await receive(body, temp, self.quota, digest=digest, limit=size, path=path)
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
            return self.commit(temp, target, written)
        finally:
            temp.unlink(missing_ok=True)

    @handles("objects.mkdir")
    def mkdir(self, ctx: Context, request: ObjectMkdir) -> ObjectInfo:
        target = self.storage.resolve(request.path)
        if os.path.lexists(target) and not os.path.isdir(target):
            raise Conflict(f"{request.path!r} exists and is a file", path=request.path)
        try:
            target.mkdir(parents=request.parents, exist_ok=True)
        except FileNotFoundError:
            raise NotFound(
                f"the folder of {request.path!r} does not exist (pass parents)", path=request.path
            ) from None
        except NotADirectoryError:
            raise Conflict(f"a parent of {request.path!r} is a file", path=request.path) from None
        return info_of(self.storage, target)

    @handles("objects.remove")
    async def remove(self, ctx: Context, request: ObjectRemove) -> ObjectResult:
        return await self._remove(request.path, request.recursive)

    async def _remove(self, path: str, recursive: bool) -> ObjectResult:
        target = self.existing(path)
        if target == self.storage.root:
            raise InvalidRequest("the storage root cannot be removed", path=path)
        if os.path.isdir(target) and not os.path.islink(target):
            if not recursive and _has_entries(target):
                raise Conflict(
                    f"{path!r} is a directory that is not empty (pass recursive)", path=path
                )
            size = await anyio.to_thread.run_sync(tree_size, target) if self.quota.limit else 0
            await anyio.to_thread.run_sync(shutil.rmtree, target)
        else:
            size = target.lstat().st_size if not os.path.islink(target) else 0
            target.unlink()
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
        if source == self.storage.root:
            raise InvalidRequest("the storage root cannot be moved", path=request.src)
        target = self._transfer_target(source, request)
        try:
            os.replace(source, target) if request.overwrite else os.rename(source, target)
        except OSError as exc:  # a folder onto a folder that is not empty
            raise Conflict(f"cannot move {request.src!r} onto {request.dst!r}: {exc.strerror}",
                           path=request.dst) from None  # fmt: skip
        return info_of(self.storage, target)

    @handles("objects.copy")
    async def copy(self, ctx: Context, request: ObjectTransfer) -> ObjectInfo:
        source = self.existing(request.src)
        target = self._transfer_target(source, request)
        size = await anyio.to_thread.run_sync(tree_size, source) if self.quota.limit else 0
        self.quota.check(size, path=request.dst)
        temp = self.storage.temp_path("copy")
        try:
            if os.path.isdir(source):
                await anyio.to_thread.run_sync(_copytree, source, temp)
                if os.path.isdir(target):
                    shutil.rmtree(target)
                os.replace(temp, target)
                self.quota.changed(size)
                return info_of(self.storage, target)
            await anyio.to_thread.run_sync(shutil.copyfile, source, temp)
            return self.commit(temp, target, source.stat().st_size)
        finally:
            shutil.rmtree(temp, ignore_errors=True) if temp.is_dir() else temp.unlink(
                missing_ok=True
            )

    def _transfer_target(self, source: Path, request: ObjectTransfer) -> Path:
        target = self.storage.resolve(request.dst)
        if target == source or target.is_relative_to(source):
            raise InvalidRequest(f"cannot put {request.src!r} inside itself", path=request.dst)
        if os.path.lexists(target):
            if not request.overwrite:
                raise Conflict(f"{request.dst!r} exists (pass overwrite)", path=request.dst)
            if os.path.isdir(target) != os.path.isdir(source):
                raise Conflict(f"{request.dst!r} exists and is not the same kind", path=request.dst)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    # -- archives -------------------------------------------------------------------------

    @handles("objects.zip")
    async def zip(self, ctx: Context, request: ObjectZip) -> AsyncIterator[ObjectProgress]:
        source = self.existing(request.path)
        dest_path = request.dest or (request.path.rstrip("/") + ".zip")
        dest = self.destination(dest_path, request.overwrite)

        def work(progress: Callable[[int, int], None]) -> tuple[int, int]:
            done = [0, 0]

            def step(entries: int, size: int) -> None:
                done[:] = [entries, size]
                progress(entries, size)

            zip_to_file(self.storage.root, source, dest, step)
            return done[0], done[1]

        async for event in _progress("zipping", request.path, dest_path, work):
            yield event
        self.quota.changed(dest.stat().st_size)

    @handles("objects.unzip")
    async def unzip(self, ctx: Context, request: ObjectZip) -> AsyncIterator[ObjectProgress]:
        archive, _ = self.stat(request.path)
        if not archive.is_file():
            raise InvalidRequest(f"{request.path!r} is not a file", path=request.path)
        default = (
            request.path[:-4] if request.path.lower().endswith(".zip") else request.path + ".d"
        )
        dest_path = request.dest or default
        dest = self.storage.resolve(dest_path)
        if os.path.lexists(dest) and not os.path.isdir(dest):
            raise Conflict(f"{dest_path!r} exists and is a file", path=dest_path)
        limits = self._unzip_limits
        if self.quota.limit is not None:
            free = max(self.quota.limit - self.quota.used, 0)
            limits = UnzipLimits(
                limits.max_entries, min(limits.max_total_size, free), limits.max_ratio
            )

        def work(progress: Callable[[int, int], None]) -> tuple[int, int]:
            return unzip(archive, dest, limits, request.overwrite, progress)

        async for event in _progress("unzipping", request.path, dest_path, work):
            yield event
            if event.action == "done":
                self.quota.changed(event.bytes)


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


def _has_entries(folder: Path) -> bool:
    with os.scandir(folder) as entries:
        return any(True for _ in entries)


def _copytree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=True)
