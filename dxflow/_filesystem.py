"""An engine's object store as an fsspec filesystem: ``dxflow://`` URLs everywhere.

pandas, dask, xarray, zarr and anything else that speaks fsspec read and write an
engine's files through `DxflowFileSystem`, registered for the ``dxflow`` protocol by
the ``fsspec.specs`` entry point (nothing to import first)::

    import fsspec, pandas

    fs = fsspec.filesystem("dxflow")                          # DXFLOW_URL, else in-process
    fs = fsspec.filesystem("dxflow", home="~/.dxflow")        # in-process, on that home
    fs = fsspec.filesystem("dxflow", url="https://node:7419", key="~/.dxflow/keys/me.pem")
    fs = engine.objects.fs()                                  # an engine you already have

    opts = {"url": "https://node:7419", "key": "~/.dxflow/keys/me.pem"}
    df.to_csv("dxflow://data/x.csv", storage_options=opts)
    df = pandas.read_csv("dxflow://data/x.csv", storage_options=opts)

Which engine, from the storage options:

- ``url`` (and ``key``, the private key file; ``verify``: False or a CA bundle): a
  remote engine over HTTP(S), or ``unix:///path/engine.sock``. Without ``key``,
  ``DXFLOW_KEY`` is used.
- ``home``: the engine on that home, in this process (``key`` picks the identity).
- neither: ``DXFLOW_URL``/``DXFLOW_KEY`` when set, else in-process on ``DXFLOW_HOME``.
- ``engine``: an `AsyncEngine` (what ``engine.objects.fs()`` passes).

Paths are relative to the storage root, ``/``-separated; ``dxflow://data/x.csv``,
``dxflow:///data/x.csv`` and ``data/x.csv`` all name the same file, and ``""`` is the
root. A URL may also name the engine itself: ``dxflow+https://node:7419/data/x.csv``
(or ``dxflow+http://``) is ``data/x.csv`` with ``url="https://node:7419"``; the
package's ``fsspec.specs`` entry points register those two protocols as well.

Errors are the ones fsspec users expect: a missing path raises FileNotFoundError, an
existing one FileExistsError, a denied operation (a READ_ONLY key writing, say)
PermissionError; each carries the dxflow error as its ``__cause__``.

Every operation runs on the async SDK: listings, ranges (`cat_ranges` in one round
trip), uploads, copies and moves are the store's own. Files opened for writing are
spooled (in memory, then on disk) and committed atomically when they are closed.
"""

from __future__ import annotations

import asyncio
import errno
import os
import posixpath
import weakref
from typing import IO, TYPE_CHECKING, Any

import anyio
from fsspec.asyn import AsyncFileSystem, sync, sync_wrapper
from fsspec.callbacks import DEFAULT_CALLBACK
from fsspec.utils import isfilelike, tokenize

from . import _filesystem_file as _file
from . import _operations as ops
from ._exceptions import (
    ApiError,
    Conflict,
    RangeNotSatisfiable,
    error_from_code,
)
from ._filesystem_file import DxflowFile
from ._filesystem_paths import (
    CachedPerEngine,
    entry,
    file_size,
    has_magic,
    kwargs_from_url,
    os_errors,
    stringify,
    strip_protocol,
)
from ._filesystem_ranges import RangeReads

if TYPE_CHECKING:
    from ._api._protocol import AsyncEngineLike
    from ._api.objects import AsyncObjectStore

__all__ = ["DxflowFile", "DxflowFileSystem"]


class DxflowFileSystem(RangeReads, AsyncFileSystem, metaclass=CachedPerEngine):  # type: ignore[misc]
    """An engine's storage root as an fsspec filesystem (see the module docstring)."""

    protocol = ("dxflow", "dxflow+https", "dxflow+http")
    root_marker = ""

    def __init__(
        self,
        url: str | None = None,
        key: str | os.PathLike[str] | None = None,
        home: str | os.PathLike[str] | None = None,
        engine: AsyncEngineLike | None = None,
        verify: bool | str = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.url, self.key, self.home, self.verify = url, key, home, verify
        self._given = engine
        self._shared: AsyncEngineLike | None = None
        """An engine usable on any loop: an in-process one."""
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncEngineLike] = (
            weakref.WeakKeyDictionary()
        )
        """HTTP engines: an httpx client belongs to the loop it was made on."""

    # -- the engine ----------------------------------------------------------------------

    async def _store(self) -> AsyncObjectStore:
        from ._api.objects import AsyncObjectStore

        return AsyncObjectStore(await self._engine())

    async def _engine(self) -> AsyncEngineLike:
        if self._shared is not None:
            return self._shared
        loop = asyncio.get_running_loop()
        engine = self._per_loop.get(loop)
        if engine is None:
            engine = self._open_engine()
            if engine.in_process:  # no client bound to a loop: one engine serves them all
                self._shared = engine
            else:
                self._per_loop[loop] = engine
        return engine

    def _open_engine(self) -> AsyncEngineLike:
        """The engine to use on the running loop; called on that loop."""
        from ._api.engine import AsyncEngine

        given = self._given
        if given is not None:  # a remote one gets an HTTP client of this loop's own
            return given if given.in_process else given._clone()
        if self.url is None and (self.home is not None or not os.environ.get("DXFLOW_URL")):
            return AsyncEngine(key=self.key, home=self.home)
        key = self.key if self.key is not None else os.environ.get("DXFLOW_KEY") or None
        return AsyncEngine(self.url or os.environ["DXFLOW_URL"], key=key, verify=self.verify)

    async def _aclose(self) -> None:
        """Close what this filesystem opened on the running loop (reopened on next use)."""
        loop = asyncio.get_running_loop()
        engine = self._per_loop.pop(loop, None)
        if engine is not None:
            await engine.aclose()
        shared, self._shared = self._shared, None
        if shared is not None and shared is not self._given:
            await shared.aclose()

    def close(self) -> None:
        """Close the engines and connections this filesystem opened.

        Blocking use only (use ``await fs._aclose()`` on your own loop otherwise). The
        filesystem stays usable: it reconnects on its next call.
        """
        for loop, engine in list(self._per_loop.items()):
            if loop is not self.loop and loop.is_running():
                asyncio.run_coroutine_threadsafe(engine.aclose(), loop).result()
        if self.loop is not None:
            sync(self.loop, self._aclose)
        self._per_loop.clear()

    # -- paths ---------------------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(stringify(path))

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        return kwargs_from_url(path)

    # -- reading -------------------------------------------------------------------------

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        path = self._strip_protocol(path)
        store = await self._store()
        with os_errors(path):
            return entry(await store.info(path))

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
        except FileNotFoundError:
            return False
        return True

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        path = self._strip_protocol(path)
        store = await self._store()
        with os_errors(path):
            items = await store.ls(path, hidden=True)
        return [entry(item) for item in items] if detail else [item.path for item in items]

    async def _find(
        self, path: str, maxdepth: int | None = None, withdirs: bool = False, **kwargs: Any
    ) -> Any:
        """Every file under `path` from one listing (one round trip per 64 levels)."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        path = self._strip_protocol(path)
        detail = kwargs.pop("detail", False)
        try:
            top = await self._info(path)
        except FileNotFoundError:
            return {} if detail else []
        found = {path: top} if top["type"] == "file" else await self._tree(path, maxdepth)
        if top["type"] == "directory" and withdirs and path:
            found[path] = top
        if not withdirs:
            found = {name: info for name, info in found.items() if info["type"] == "file"}
        names = sorted(found)
        return {name: found[name] for name in names} if detail else names

    async def _tree(self, path: str, maxdepth: int | None) -> dict[str, dict[str, Any]]:
        depth = min(maxdepth or 64, 64)
        store = await self._store()
        with os_errors(path):
            items = await store.ls(path, depth=depth, hidden=True)
        found = {item.path: entry(item) for item in items}
        if maxdepth is None or maxdepth > depth:  # the listing stopped at 64 levels
            left = None if maxdepth is None else maxdepth - depth
            base = path.count("/") + 1 if path else 0
            for item in items:
                if item.type == "directory" and item.path.count("/") + 1 - base == depth:
                    found.update(await self._tree(item.path, left))
        return found

    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        path = self._strip_protocol(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = (await self._info(path))["size"]
            start = None if start is None else max(size + start, 0) if start < 0 else start
            end = None if end is None else max(size + end, 0) if end < 0 else end
        if start is not None and end is not None and end <= start:
            await self._info(path)  # a missing file still raises
            return b""
        return await self._download(path, start or None, end)

    async def _download(self, path: str, start: int | None, end: int | None) -> bytes:
        engine = await self._engine()
        parts = []
        try:
            with os_errors(path):
                params = {"path": path, "start": start, "end": end}
                async with engine._download(ops.objects.READ, **params) as download:
                    if download.etag is None:  # a directory comes as a zip made on the fly
                        raise IsADirectoryError(errno.EISDIR, "is a directory", path)
                    async for chunk in download.chunks:
                        parts.append(chunk)
        except RangeNotSatisfiable:  # starts at or past the end: nothing, as for a file
            return b""
        return b"".join(parts)

    async def _get_file(
        self, rpath: str, lpath: Any, callback: Any = DEFAULT_CALLBACK, **kwargs: Any
    ) -> None:
        from pathlib import Path

        rpath = self._strip_protocol(rpath)
        info = await self._info(rpath)
        if info["type"] == "directory":
            if not isfilelike(lpath):
                os.makedirs(lpath, exist_ok=True)
            return
        if isfilelike(lpath):
            lpath.write(await self._cat_file(rpath))
            return
        callback.set_size(info["size"])
        store = await self._store()
        with os_errors(rpath):
            await store._get_one(rpath, Path(lpath), lambda done, _: callback.absolute_update(done))

    # -- writing -------------------------------------------------------------------------

    async def _pipe_file(
        self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any
    ) -> None:
        path = self._strip_protocol(path)
        store = await self._store()
        with os_errors(path):
            await store.pipe(path, bytes(value), overwrite=mode != "create")

    async def _put_file(
        self,
        lpath: str,
        rpath: str,
        callback: Any = DEFAULT_CALLBACK,
        mode: str = "overwrite",
        **kwargs: Any,
    ) -> None:
        rpath = self._strip_protocol(rpath)
        size = await anyio.to_thread.run_sync(file_size, lpath)
        if size is None:
            await self._makedirs(rpath, exist_ok=True)
            return
        callback.set_size(size)
        store = await self._store()
        with os_errors(rpath):
            await store.put(lpath, rpath, overwrite=mode != "create",
                            progress=lambda done, _: callback.absolute_update(done))  # fmt: skip

    async def _upload(self, reader: IO[bytes], path: str, overwrite: bool) -> None:
        """Commit what a `DxflowFile` wrote: one request for a small file, else a stream."""
        size = reader.seek(0, os.SEEK_END)
        reader.seek(0)
        store = await self._store()
        with os_errors(path):
            if size <= _file.SPOOL_MEMORY:
                await store.pipe(path, reader.read(), overwrite=overwrite)
            else:
                await store.put(reader, path, overwrite=overwrite)

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Make a folder; one that exists already is fine (a file there is not)."""
        path = self._strip_protocol(path)
        if not path:
            return  # the root is always there
        store = await self._store()
        with os_errors(path):
            await store.mkdir(path, parents=create_parents)

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        path = self._strip_protocol(path)
        if not exist_ok and await self._exists(path):
            raise FileExistsError(errno.EEXIST, "exists already", path)
        await self._mkdir(path, create_parents=True)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        path = self._strip_protocol(path)
        store = await self._store()
        with os_errors(path, conflict=errno.ENOTEMPTY):
            await store.rm(path)

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Remove paths in one round trip (globs and `maxdepth` go the generic way)."""
        given = [path] if isinstance(path, str) else list(path)
        if maxdepth is not None or any(has_magic(p) for p in given):
            await super()._rm(path, recursive, batch_size, maxdepth, **kwargs)
            return
        names = sorted(set(self._strip_protocol(given)))
        if recursive:  # a path inside another one listed goes with it
            names = [n for n in names if not any(n.startswith(o + "/") for o in names)]
        if not names:
            return
        store = await self._store()
        with os_errors(names[0]):
            results = await store.rm_many(names, recursive=recursive)
        for result in results:
            if not result.ok:
                with os_errors(result.path, conflict=errno.ENOTEMPTY):
                    raise error_from_code(result.code or "error", result.error or "failed")

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Copy one file; a folder named here is made empty (its files come one by one)."""
        path1, path2 = self._strip_protocol(path1), self._strip_protocol(path2)
        if (await self._info(path1))["type"] == "directory":
            await self._makedirs(path2, exist_ok=True)
            return
        store = await self._store()
        with os_errors(path1):
            await store.cp(path1, path2, overwrite=True)

    async def _mv(
        self, path1: Any, path2: Any, recursive: bool = False, maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:  # fmt: skip
        """Move with the store's own rename: a folder moves whole, at once."""
        simple = isinstance(path1, str) and isinstance(path2, str) and maxdepth is None
        if not simple or has_magic(path1):
            await self._copy(path1, path2, recursive=recursive, maxdepth=maxdepth,
                             on_error="raise")  # fmt: skip
            await self._rm(path1, recursive=recursive)
            return
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        if src == dst:
            return
        if path2.endswith("/") or await self._isdir(dst):
            dst = posixpath.join(dst, posixpath.basename(src)) if dst else posixpath.basename(src)
        await self._rename(src, dst)

    async def _rename(self, src: str, dst: str) -> None:
        """Move `src` to `dst`, replacing a file there but never a folder."""
        store = await self._store()
        try:
            await store.mv(src, dst)
        except Conflict:
            if (await self._info(dst))["type"] == "directory":
                raise FileExistsError(errno.EEXIST, "a folder is in the way", dst) from None
            with os_errors(src):
                await store.mv(src, dst, overwrite=True)
        except ApiError:
            with os_errors(src):
                raise

    mv = sync_wrapper(_mv)

    # -- versions ------------------------------------------------------------------------

    async def _ukey(self, path: str) -> str:
        """The file's entity tag: it changes whenever the content does."""
        info = await self._info(path)
        return str(info["etag"] or tokenize(info))

    async def _checksum(self, path: str) -> int:
        return int(tokenize(await self._ukey(path)), 16)

    async def _modified(self, path: str) -> Any:
        from datetime import UTC, datetime

        return datetime.fromtimestamp((await self._info(path))["mtime"], UTC)

    ukey = sync_wrapper(_ukey)
    checksum = sync_wrapper(_checksum)
    modified = sync_wrapper(_modified)

    # -- file objects --------------------------------------------------------------------

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> DxflowFile:
        path = self._strip_protocol(path)
        info = None
        if mode == "rb":
            info = self.info(path)
            if info["type"] == "directory":
                raise IsADirectoryError(errno.EISDIR, "is a directory", path)
            kwargs["size"] = info["size"]
        elif mode == "xb" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "exists already", path)
        file = DxflowFile(self, path, mode, block_size, autocommit,
                          cache_options=cache_options, **kwargs)  # fmt: skip
        if info is not None:
            file.details = info
        return file
