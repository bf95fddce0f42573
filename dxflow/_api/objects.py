"""`engine.objects`: the object store, async (`AsyncObjectStore`) and blocking (`ObjectStore`).

Only what is the same on every transport lives here (walking folders, temp + rename,
progress over many files); how a file's bytes travel is the transport's `get_file` /
`put_file`.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from .. import _operations as ops
from .._display import Listing
from .._durations import parse_duration
from .._exceptions import NotFound
from .._models import (
    ObjectChecksum,
    ObjectInfo,
    ObjectListing,
    ObjectProgress,
    ObjectResult,
    ShareLink,
)
from .._progress import as_progress
from .._transports._files import is_special
from .._wire import CHUNK
from ._base import Blocking

if TYPE_CHECKING:
    from .._filesystem import DxflowFileSystem
    from ._protocol import AsyncEngineLike

__all__ = ["AsyncObjectStore", "ObjectStore", "Progress"]

Progress = Callable[[int, int | None], object] | None
"""Called with (bytes done, bytes in all) as a transfer goes."""
ProgressArg = Progress | bool
"""A `Progress`, or True for a ready display (`dxflow.Progress()`)."""
Source = str | os.PathLike[str] | bytes | IO[bytes]

NO_SERVER = (
    "share link made, but no engine server runs on this engine's home, so the link has "
    "no URL yet (link.url is None): start one with `dxflow boot up` (on the same "
    "DXFLOW_HOME); the link then works, and engine.objects.shares() lists it with its URL"
)


class AsyncObjectStore:
    def __init__(self, engine: AsyncEngineLike) -> None:
        self._engine = engine

    # -- reading --------------------------------------------------------------------------

    async def listing(
        self, path: str = "", pattern: str | None = None, depth: int = 1,
        hidden: bool = False, limit: int | None = None, offset: int = 0,
    ) -> ObjectListing:  # fmt: skip
        """A page of a directory, with the total count of its entries."""
        return await self._engine._call(ops.objects.LIST, path=path, pattern=pattern, depth=depth,
                                        hidden=hidden, limit=limit, offset=offset)  # fmt: skip

    async def ls(
        self, path: str = "", pattern: str | None = None, depth: int = 1,
        hidden: bool = False, limit: int | None = None, offset: int = 0,
    ) -> list[ObjectInfo]:  # fmt: skip
        """A list that shows as a table (`ls -l`) in Jupyter and print()."""
        return Listing((await self.listing(path, pattern, depth, hidden, limit, offset)).items)

    async def info(self, path: str) -> ObjectInfo:
        return await self._engine._call(ops.objects.INFO, path=path)

    async def exists(self, path: str) -> bool:
        try:
            await self.info(path)
        except NotFound:
            return False
        return True

    async def checksum(self, path: str) -> str:
        """The sha256 of a file, as hex."""
        result: ObjectChecksum = await self._engine._call(ops.objects.CHECKSUM, path=path)
        return result.digest

    async def cat(self, path: str, start: int | None = None, end: int | None = None) -> bytes:
        """A file's bytes (or bytes `start` to `end`, end exclusive)."""
        async with self._engine._download(ops.objects.READ, path=path, start=start,
                                          end=end) as download:  # fmt: skip
            return b"".join([chunk async for chunk in download.chunks])

    async def cat_ranges(self, ranges: Iterable[tuple[str, int, int]]) -> list[bytes]:
        """Many ranges of many files in one round trip."""
        items = [{"path": p, "start": s, "end": e} for p, s, e in ranges]
        return list((await self._engine._call(ops.objects.RANGES, ranges=items)).data)

    async def get(
        self, path: str, dst: str | os.PathLike[str], progress: ProgressArg = None
    ) -> Path:
        """Download a file, or a directory recursively, to `dst`."""
        progress = as_progress(progress)
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
                await self._get_one(item.path, target / relative, None)
                done += item.size
                if progress:
                    progress(done, total)
            return target
        if target.is_dir():
            target = target / info.name
        await self._get_one(path, target, progress)
        return target

    async def _get_one(self, path: str, target: Path, progress: Progress) -> None:
        """One file into `target`, whole or not at all (a temp file renamed at the end);
        a FIFO or device is written into, never replaced."""
        if is_special(target):
            await self._engine._get_file(ops.objects.READ, target, progress, path=path)
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.part-{os.getpid()}")
        try:
            await self._engine._get_file(ops.objects.READ, temp, progress, path=path)
            os.replace(temp, target)
        finally:
            temp.unlink(missing_ok=True)

    # -- writing --------------------------------------------------------------------------

    async def pipe(self, path: str, data: bytes, overwrite: bool = True) -> ObjectInfo:
        """Write `data` to `path` in one request."""
        return await self._engine._upload(ops.objects.WRITE, data, path=path,
                                          overwrite=overwrite, size=len(data))  # fmt: skip

    async def put(
        self, src: Source, path: str, overwrite: bool = False, progress: ProgressArg = None
    ) -> ObjectInfo:
        """Upload a local file or directory (recursively), a binary file object or bytes."""
        progress = as_progress(progress)
        if isinstance(src, bytes | bytearray):
            return await self.pipe(path, bytes(src), overwrite)
        if not isinstance(src, str | os.PathLike):
            return await self._put_stream(src, path, overwrite, progress)
        source = Path(src).expanduser()
        if source.is_dir():
            return await self._put_tree(source, path, overwrite, progress)
        if not source.is_file():
            raise FileNotFoundError(f"no such file: {source}")
        return await self._put_one(source, path, overwrite, progress)

    async def _put_tree(
        self, source: Path, path: str, overwrite: bool, progress: Progress
    ) -> ObjectInfo:
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
        total, done = sum(p.stat().st_size for p in files), 0
        await self.mkdir(path)
        for folder in sorted(p for p in source.rglob("*") if p.is_dir()):
            await self.mkdir(f"{path}/{folder.relative_to(source).as_posix()}")
        for file in files:
            await self._put_one(file, f"{path}/{file.relative_to(source).as_posix()}",
                                 overwrite, None)  # fmt: skip
            done += file.stat().st_size
            if progress:
                progress(done, total)
        return await self.info(path)

    async def _put_one(
        self, source: Path, path: str, overwrite: bool, progress: Progress
    ) -> ObjectInfo:
        return await self._engine._put_file(ops.objects.WRITE, source, progress, path=path,
                                            overwrite=overwrite)  # fmt: skip

    async def _put_stream(
        self, reader: IO[bytes], path: str, overwrite: bool, progress: Progress
    ) -> ObjectInfo:
        return await self._engine._upload(ops.objects.WRITE, _read_chunks(reader, None, progress),
                                          path=path, overwrite=overwrite)  # fmt: skip

    async def mkdir(self, path: str, parents: bool = True) -> ObjectInfo:
        return await self._engine._call(ops.objects.MKDIR, path=path, parents=parents)

    async def rm(self, path: str, recursive: bool = False) -> None:
        await self._engine._call(ops.objects.REMOVE, path=path, recursive=recursive)

    async def rm_many(self, paths: Iterable[str], recursive: bool = False) -> list[ObjectResult]:
        """Remove several paths; one result per path (failures do not stop the others)."""
        reply = await self._engine._call(ops.objects.REMOVE_MANY, paths=list(paths),
                                         recursive=recursive)  # fmt: skip
        return list(reply.results)

    async def mv(self, src: str, dst: str, overwrite: bool = False) -> ObjectInfo:
        return await self._engine._call(ops.objects.MOVE, src=src, dst=dst, overwrite=overwrite)

    async def cp(self, src: str, dst: str, overwrite: bool = False) -> ObjectInfo:
        return await self._engine._call(ops.objects.COPY, src=src, dst=dst, overwrite=overwrite)

    # -- archives -------------------------------------------------------------------------

    async def zip(
        self, path: str, dest: str | None = None, overwrite: bool = False,
        progress: Callable[[ObjectProgress], object] | None = None,
    ) -> ObjectProgress:  # fmt: skip
        """Archive `path` into `dest` (default `<path>.zip`); returns the `done` event."""
        return await _last(self._engine._stream(ops.objects.ZIP, path=path, dest=dest,
                                                overwrite=overwrite), progress)  # fmt: skip

    async def unzip(
        self, path: str, dest: str | None = None, overwrite: bool = False,
        progress: Callable[[ObjectProgress], object] | None = None,
    ) -> ObjectProgress:  # fmt: skip
        """Extract `path` into `dest` (default: the archive's name without `.zip`)."""
        return await _last(self._engine._stream(ops.objects.UNZIP, path=path, dest=dest,
                                                overwrite=overwrite), progress)  # fmt: skip

    # -- share links ------------------------------------------------------------------------

    async def share(
        self, path: str, expires: str | float = "1h", writable: bool = False,
        max_uses: int | None = None, readable: bool = False,
    ) -> ShareLink:  # fmt: skip
        """A link to `path` that works without a key. A `writable` link is a drop box
        (uploads only) unless `readable` too.

        Its URL names the server that serves the engine's home. In-process with no server
        running (no `dxflow boot up` on this home) the link has no URL yet, and a
        `UserWarning` says so: it works, and `shares()` lists it with its URL, once one runs.
        """
        link = await self._engine._call(ops.shares.CREATE, path=path,
                                        expires=parse_duration(expires), writable=writable,
                                        readable=readable, max_uses=max_uses)  # fmt: skip
        if link.url is None:
            import warnings

            # Explicit: this runs on the engine's loop, whose frames mean nothing to a user.
            warnings.warn_explicit(NO_SERVER, UserWarning, "dxflow", 0)
        return self._absolute(link)

    async def shares(self) -> list[ShareLink]:
        found = (await self._engine._call(ops.shares.LIST)).shares
        return Listing(self._absolute(link) for link in found)  # a table in Jupyter

    async def revoke(self, share_id: str) -> ShareLink:
        return self._absolute(await self._engine._call(ops.shares.REVOKE, id=share_id))

    def _absolute(self, link: ShareLink) -> ShareLink:
        # A link works through whatever address reaches the engine: a remote SDK puts the
        # one it uses (a reverse proxy, say) in place of the engine's own.
        base = self._engine.url
        if link.url is None or not base or not base.startswith(("http://", "https://")):
            return link  # no URL: another identity's link, listed to MASTER
        route = ops.shares.READ.path.partition("{")[0]  # the link's own path, from the table
        return link.model_copy(update={"url": base.rstrip("/") + link.url[link.url.index(route) :]})

    def fs(self, **options: Any) -> DxflowFileSystem:
        """This engine as an fsspec filesystem."""
        from .._filesystem import DxflowFileSystem

        return DxflowFileSystem(engine=self._engine, **options)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """A file object (blocking, as fsspec's are): reads are seekable (ranges), writes
        are committed at close."""
        return self.fs().open(path, mode, **kwargs)


class ObjectStore(Blocking[AsyncObjectStore]):
    """The blocking twin of `AsyncObjectStore`."""

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

    def get(self, path: str, dst: str | os.PathLike[str], progress: ProgressArg = None) -> Path:
        return self._run(self._async.get, path, dst, as_progress(progress))

    def pipe(self, path: str, data: bytes, overwrite: bool = True) -> ObjectInfo:
        return self._run(self._async.pipe, path, data, overwrite)

    def put(
        self, src: Source, path: str, overwrite: bool = False, progress: ProgressArg = None
    ) -> ObjectInfo:
        return self._run(self._async.put, src, path, overwrite, as_progress(progress))

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
        return self._async.open(path, mode, **kwargs)


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
