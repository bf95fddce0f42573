"""`engine.objects`: the object store, async (`AsyncObjectStore`) and blocking (`ObjectStore`)."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import anyio

from .._durations import parse_duration
from .._exceptions import EngineUnavailable, NotFound
from .._models import (
    ObjectChecksum,
    ObjectInfo,
    ObjectListing,
    ObjectProgress,
    ObjectResult,
    ShareLink,
    UploadInfo,
)
from .._transports._base import FileSlice
from .._wire import CHUNK
from ._resume import forget, recall, remember, upload_key

if TYPE_CHECKING:
    from .._filesystem import DxflowFileSystem
    from .engine import AsyncEngine, Engine

__all__ = ["AsyncObjectStore", "ObjectStore", "Progress"]

T = TypeVar("T")
Progress = Callable[[int, int | None], object] | None
"""Called with (bytes done, bytes in all) as a transfer goes."""
Source = str | os.PathLike[str] | bytes | IO[bytes]

SMALL = 16 << 20
"""Files up to this size go in one request; bigger ones as a resumable (tus) upload."""
PATCH = 64 << 20
_RETRIES = 5


class AsyncObjectStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    # -- reading --------------------------------------------------------------------------

    async def listing(
        self, path: str = "", pattern: str | None = None, depth: int = 1,
        hidden: bool = False, limit: int | None = None, offset: int = 0,
    ) -> ObjectListing:  # fmt: skip
        """A page of a directory, with the total count of its entries."""
        return await self._engine._call("objects.list", path=path, pattern=pattern, depth=depth,
                                        hidden=hidden, limit=limit, offset=offset)  # fmt: skip

    async def ls(
        self, path: str = "", pattern: str | None = None, depth: int = 1,
        hidden: bool = False, limit: int | None = None, offset: int = 0,
    ) -> list[ObjectInfo]:  # fmt: skip
        return (await self.listing(path, pattern, depth, hidden, limit, offset)).items

    async def info(self, path: str) -> ObjectInfo:
        return await self._engine._call("objects.info", path=path)

    async def exists(self, path: str) -> bool:
        try:
            await self.info(path)
        except NotFound:
            return False
        return True

    async def checksum(self, path: str) -> str:
        """The sha256 of a file, as hex."""
        result: ObjectChecksum = await self._engine._call("objects.checksum", path=path)
        return result.digest

    async def cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """A file's bytes (or bytes `start` to `end`, end exclusive)."""
        parts = []
        async with self._engine._transport.download(
            _op("objects.read"), {"path": path, "start": start, "end": end}
        ) as download:
            async for chunk in download.chunks:
                parts.append(chunk)
        return b"".join(parts)

    async def cat_ranges(self, ranges: Iterable[tuple[str, int, int]]) -> list[bytes]:
        """Many ranges of many files in one round trip."""
        items = [{"path": p, "start": s, "end": e} for p, s, e in ranges]
        return list((await self._engine._call("objects.ranges", ranges=items)).data)

    async def get(self, path: str, dst: str | os.PathLike[str], progress: Progress = None) -> Path:
        """Download a file, or a directory recursively, to `dst`."""
        target = Path(dst).expanduser()
        info = await self.info(path)
        if info.type == "directory":
            entries = await self.ls(path, depth=64, hidden=True)
            files = [i for i in entries if i.type == "file"]
            total, done = sum(i.size for i in files), 0
            target.mkdir(parents=True, exist_ok=True)
            for folder in (i for i in entries if i.type == "directory"):  # empty ones too
                (target / folder.path[len(info.path) :].lstrip("/")).mkdir(
                    parents=True, exist_ok=True
                )
            for item in files:
                relative = item.path[len(info.path) :].lstrip("/")
                await self._get_file(item.path, target / relative, None)
                done += item.size
                if progress:
                    progress(done, total)
            return target
        if target.is_dir():
            target = target / info.name
        await self._get_file(path, target, progress)
        return target

    async def _get_file(self, path: str, target: Path, progress: Progress) -> None:
        if _is_special(target):  # /dev/stdout, a FIFO: write into it, never replace it
            await self._download(path, target, progress, stream_only=True)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.part-{os.getpid()}")
        try:
            await self._download(path, temp, progress)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    async def _download(
        self, path: str, target: Path, progress: Progress, stream_only: bool = False
    ) -> None:
        transport = self._engine._transport
        done = await transport.download_to(_op("objects.read"), {"path": path}, target, progress)
        if done is not None:
            return
        async with transport.download(_op("objects.read"), {"path": path}) as download:
            if download.path is not None and not stream_only:  # in-process: a kernel copy
                await anyio.to_thread.run_sync(_copy, download.path, target)
                if progress:
                    progress(download.size or 0, download.size)
            else:
                await _write_chunks(download.chunks, target, download.size, progress)

    # -- writing --------------------------------------------------------------------------

    async def pipe(self, path: str, data: bytes, overwrite: bool = True) -> ObjectInfo:
        """Write `data` to `path` in one request."""
        return await self._engine._transport.upload(
            _op("objects.write"), {"path": path, "overwrite": overwrite, "size": len(data)}, data
        )

    async def put(
        self, src: Source, path: str, overwrite: bool = False, progress: Progress = None
    ) -> ObjectInfo:
        """Upload a local file or directory (recursively), a binary file object or bytes."""
        if isinstance(src, bytes | bytearray):
            return await self._engine._transport.upload(
                _op("objects.write"),
                {"path": path, "overwrite": overwrite, "size": len(src)},
                bytes(src),
            )
        if not isinstance(src, str | os.PathLike):
            return await self._put_stream(src, path, overwrite, progress)
        source = Path(src).expanduser()
        if source.is_dir():
            return await self._put_tree(source, path, overwrite, progress)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        return await self._put_file(source, path, overwrite, progress)

    async def _put_tree(
        self, source: Path, path: str, overwrite: bool, progress: Progress
    ) -> ObjectInfo:
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        total, done = sum(p.stat().st_size for p in files), 0
        await self.mkdir(path)
        for folder in sorted(p for p in source.rglob("*") if p.is_dir()):
            await self.mkdir(f"{path}/{folder.relative_to(source).as_posix()}")
        for file in files:
            await self._put_file(file, f"{path}/{file.relative_to(source).as_posix()}",
                                 overwrite, None)  # fmt: skip
            done += file.stat().st_size
            if progress:
                progress(done, total)
        return await self.info(path)

    async def _put_file(
        self, source: Path, path: str, overwrite: bool, progress: Progress
    ) -> ObjectInfo:
        size = source.stat().st_size
        transport = self._engine._transport
        if transport.in_process:  # the store copies the file itself
            from .._core import LocalFile

            info: ObjectInfo = await transport.upload(
                _op("objects.write"), {"path": path, "overwrite": overwrite}, LocalFile(source)
            )
        elif size <= SMALL:
            info = await transport.upload(
                _op("objects.write"),
                {"path": path, "overwrite": overwrite, "size": size},
                FileSlice(source, 0, size),
            )
        else:
            return await self._resumable(source, path, overwrite, size, progress)
        if progress:
            progress(size, size)
        return info

    async def _put_stream(
        self, reader: IO[bytes], path: str, overwrite: bool, progress: Progress
    ) -> ObjectInfo:
        return await self._engine._transport.upload(
            _op("objects.write"), {"path": path, "overwrite": overwrite},
            _read_chunks(reader, None, progress),
        )  # fmt: skip

    async def _resumable(
        self, source: Path, path: str, overwrite: bool, size: int, progress: Progress
    ) -> ObjectInfo:
        """A tus upload that picks up where it stopped: after a broken connection, and
        after a restart of this program (the upload's id is remembered on disk)."""
        key = upload_key(self._engine._transport.url or "", source, path)
        upload, offset = await self._resume(recall(key), size)
        if upload is None:
            created: UploadInfo = await self._engine._call(
                "uploads.create", path=path, length=size, overwrite=overwrite
            )
            upload = created.id
            remember(key, upload)
        failures = 0
        while offset < size:
            try:
                length = min(PATCH, size - offset)
                body = FileSlice(source, offset, length, _shifted(progress, offset, size))
                reply = await self._engine._transport.upload(
                    _op("uploads.append"), {"id": upload, "offset": offset}, body
                )
                offset = reply.offset
            except EngineUnavailable:
                failures += 1
                if failures > _RETRIES:
                    raise
                await anyio.sleep(0.2 * failures)
                offset = (await self._engine._call("uploads.status", id=upload)).offset
        forget(key)
        return await self.info(path)

    async def _resume(self, upload: str | None, size: int) -> tuple[str | None, int]:
        """The remembered upload and its offset, if the engine still has it."""
        if upload is None:
            return None, 0
        try:
            status: UploadInfo = await self._engine._call("uploads.status", id=upload)
        except NotFound:
            return None, 0
        return (upload, status.offset) if status.length == size else (None, 0)

    async def mkdir(self, path: str, parents: bool = True) -> ObjectInfo:
        return await self._engine._call("objects.mkdir", path=path, parents=parents)

    async def rm(self, path: str, recursive: bool = False) -> None:
        await self._engine._call("objects.remove", path=path, recursive=recursive)

    async def rm_many(self, paths: Iterable[str], recursive: bool = False) -> list[ObjectResult]:
        """Remove several paths; one result per path (failures do not stop the others)."""
        reply = await self._engine._call("objects.remove_many", paths=list(paths),
                                         recursive=recursive)  # fmt: skip
        return list(reply.results)

    async def mv(self, src: str, dst: str, overwrite: bool = False) -> ObjectInfo:
        return await self._engine._call("objects.move", src=src, dst=dst, overwrite=overwrite)

    async def cp(self, src: str, dst: str, overwrite: bool = False) -> ObjectInfo:
        return await self._engine._call("objects.copy", src=src, dst=dst, overwrite=overwrite)

    # -- archives -------------------------------------------------------------------------

    async def zip(
        self, path: str, dest: str | None = None, overwrite: bool = False,
        progress: Callable[[ObjectProgress], object] | None = None,
    ) -> ObjectProgress:  # fmt: skip
        """Archive `path` into `dest` (default `<path>.zip`); returns the `done` event."""
        return await _last(self._engine._stream("objects.zip", path=path, dest=dest,
                                                overwrite=overwrite), progress)  # fmt: skip

    async def unzip(
        self, path: str, dest: str | None = None, overwrite: bool = False,
        progress: Callable[[ObjectProgress], object] | None = None,
    ) -> ObjectProgress:  # fmt: skip
        """Extract `path` into `dest` (default: the archive's name without `.zip`)."""
        return await _last(self._engine._stream("objects.unzip", path=path, dest=dest,
                                                overwrite=overwrite), progress)  # fmt: skip

    # -- share links ------------------------------------------------------------------------

    async def share(
        self, path: str, expires: str | float = "1h", writable: bool = False,
        max_uses: int | None = None, readable: bool = False,
    ) -> ShareLink:  # fmt: skip
        """A link to `path` that works without a key. A `writable` link is a drop box
        (uploads only) unless `readable` too."""
        link = await self._engine._call("shares.create", path=path,
                                        expires=parse_duration(expires), writable=writable,
                                        readable=readable, max_uses=max_uses)  # fmt: skip
        return self._absolute(link)

    async def shares(self) -> list[ShareLink]:
        return [self._absolute(link) for link in (await self._engine._call("shares.list")).shares]

    async def revoke(self, share_id: str) -> ShareLink:
        return self._absolute(await self._engine._call("shares.revoke", id=share_id))

    def _absolute(self, link: ShareLink) -> ShareLink:
        # A link works through whatever address reaches the engine: a remote SDK puts the
        # one it uses (a reverse proxy, say) in place of the engine's own.
        base = self._engine._transport.url
        if link.url is None or not base or not base.startswith(("http://", "https://")):
            return link  # no URL: another identity's link, listed to MASTER
        route = _op("shares.read").path.partition("{")[0]  # the link's own path, from the table
        return link.model_copy(update={"url": base.rstrip("/") + link.url[link.url.index(route) :]})

    def fs(self, **options: Any) -> DxflowFileSystem:
        """This engine as an fsspec filesystem."""
        from .._filesystem import DxflowFileSystem

        return DxflowFileSystem(engine=self._engine, **options)


class ObjectStore:
    """The blocking twin of `AsyncObjectStore`: the same methods, run on the engine's loop."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._async = AsyncObjectStore(engine._async)

    def _run(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        return self._engine._runner.run(method, *args)

    def listing(
        self, path: str = "", pattern: str | None = None, depth: int = 1,
        hidden: bool = False, limit: int | None = None, offset: int = 0,
    ) -> ObjectListing:  # fmt: skip
        return self._run(self._async.listing, path, pattern, depth, hidden, limit, offset)

    def ls(
        self, path: str = "", pattern: str | None = None, depth: int = 1,
        hidden: bool = False, limit: int | None = None, offset: int = 0,
    ) -> list[ObjectInfo]:  # fmt: skip
        return self._run(self._async.ls, path, pattern, depth, hidden, limit, offset)

    def info(self, path: str) -> ObjectInfo:
        return self._run(self._async.info, path)

    def exists(self, path: str) -> bool:
        return self._run(self._async.exists, path)

    def checksum(self, path: str) -> str:
        return self._run(self._async.checksum, path)

    def cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        return self._run(self._async.cat, path, start, end)

    def cat_ranges(self, ranges: Iterable[tuple[str, int, int]]) -> list[bytes]:
        return self._run(self._async.cat_ranges, ranges)

    def get(self, path: str, dst: str | os.PathLike[str], progress: Progress = None) -> Path:
        return self._run(self._async.get, path, dst, progress)

    def pipe(self, path: str, data: bytes, overwrite: bool = True) -> ObjectInfo:
        return self._run(self._async.pipe, path, data, overwrite)

    def put(
        self, src: Source, path: str, overwrite: bool = False, progress: Progress = None
    ) -> ObjectInfo:
        return self._run(self._async.put, src, path, overwrite, progress)

    def mkdir(self, path: str, parents: bool = True) -> ObjectInfo:
        return self._run(self._async.mkdir, path, parents)

    def rm(self, path: str, recursive: bool = False) -> None:
        return self._run(self._async.rm, path, recursive)

    def rm_many(self, paths: Iterable[str], recursive: bool = False) -> list[ObjectResult]:
        return self._run(self._async.rm_many, paths, recursive)

    def mv(self, src: str, dst: str, overwrite: bool = False) -> ObjectInfo:
        return self._run(self._async.mv, src, dst, overwrite)

    def cp(self, src: str, dst: str, overwrite: bool = False) -> ObjectInfo:
        return self._run(self._async.cp, src, dst, overwrite)

    def zip(
        self, path: str, dest: str | None = None, overwrite: bool = False,
        progress: Callable[[ObjectProgress], object] | None = None,
    ) -> ObjectProgress:  # fmt: skip
        return self._run(self._async.zip, path, dest, overwrite, progress)

    def unzip(
        self, path: str, dest: str | None = None, overwrite: bool = False,
        progress: Callable[[ObjectProgress], object] | None = None,
    ) -> ObjectProgress:  # fmt: skip
        return self._run(self._async.unzip, path, dest, overwrite, progress)

    def share(
        self, path: str, expires: str | float = "1h", writable: bool = False,
        max_uses: int | None = None, readable: bool = False,
    ) -> ShareLink:  # fmt: skip
        """A link to `path` that works without a key. A `writable` link is a drop box
        (uploads only) unless `readable` too."""
        return self._run(self._async.share, path, expires, writable, max_uses, readable)

    def shares(self) -> list[ShareLink]:
        return self._run(self._async.shares)

    def revoke(self, share_id: str) -> ShareLink:
        return self._run(self._async.revoke, share_id)

    def fs(self, **options: Any) -> DxflowFileSystem:
        """This engine as an fsspec filesystem."""
        return self._async.fs(**options)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """A file object: reads are seekable (ranges), writes are committed at close."""
        return self.fs().open(path, mode, **kwargs)


def _op(name: str) -> Any:
    from .._operations import OPERATIONS

    return OPERATIONS[name]


def _is_special(target: Path) -> bool:
    """A device, FIFO or socket: something to write into, not a file to replace."""
    try:
        mode = target.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _copy(source: Path, target: Path) -> None:
    import shutil

    shutil.copyfile(source, target)


def _shifted(progress: Progress, offset: int, total: int) -> Progress:
    if progress is None:
        return None
    return lambda done, _: progress(offset + done, total)


async def _read_chunks(
    reader: IO[bytes], length: int | None, progress: Progress
) -> AsyncIterator[bytes]:
    done = 0
    while length is None or done < length:
        want = CHUNK if length is None else min(CHUNK, length - done)
        chunk = await anyio.to_thread.run_sync(reader.read, want)
        if not chunk:
            break
        done += len(chunk)
        if progress:
            progress(done, length)
        yield chunk


async def _write_chunks(
    chunks: AsyncIterator[bytes], target: Path, size: int | None, progress: Progress
) -> None:
    from .._pipe import write_stream

    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = await write_stream(
            chunks, fd, after_block=(lambda total: progress(total, size)) if progress else None
        )
    finally:
        os.close(fd)
    if progress:
        progress(done, size)


async def _last(
    events: AsyncIterator[ObjectProgress], progress: Callable[[ObjectProgress], object] | None
) -> ObjectProgress:
    last = None
    async for event in events:
        if progress:
            progress(event)
        last = event
    assert last is not None
    return last
