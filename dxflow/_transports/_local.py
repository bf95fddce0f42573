"""LocalTransport: calls the core in this process, with no serialization.

The transport that owns its core (`owns_core`, the default) starts the core's background
work on the loop of its first async call and stops it at `aclose`; inline calls run on
the caller's thread and never start it. Transports sharing a core they do not own leave
its lifecycle alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio

from .._core import Blob, Context, EngineCore, LocalFile
from .._keypairs import PrivateKey
from .._models import Response
from .._operations import Operation
from .._pipe import read_in_thread
from ._base import Download, Progress, Transport, as_chunks
from ._files import copy_file, is_special, write_chunks

__all__ = ["LocalTransport"]


class LocalTransport(Transport):
    in_process = True

    def __init__(
        self, core: EngineCore, key: PrivateKey | None = None, *, owns_core: bool = True
    ) -> None:
        self.core = core
        self._key = key
        self._owns_core = owns_core
        self._lifecycle = core.lifecycle if owns_core else None
        self._dispatcher = core.dispatcher
        self._master = core.local_context()
        self._server: Transport | None = None
        """This home's server, through its socket: where the links of its agents are."""

    def _start(self) -> None:
        """Start the core's background work, on this loop, if this transport owns it."""
        if self._lifecycle is not None and not self._lifecycle.active:
            self._lifecycle.start()

    def _context(self) -> Context:
        # With a key the identity is looked up on every call, so unregistering or
        # rotating the key takes effect at once, as it does over HTTP.
        return self._master if self._key is None else self.core.local_context(self._key)

    async def call(self, op: Operation, params: Mapping[str, Any]) -> Response:
        self._start()
        result: Response = await self._dispatcher.call(self._context(), op, params)
        return result

    async def stream(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Response]:
        self._start()
        async for item in self._dispatcher.stream(self._context(), op, params):
            yield item

    @asynccontextmanager
    async def download(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Download]:
        self._start()
        blob: Blob = await self._dispatcher.call(self._context(), op, params)
        blob.claimed()  # the bytes will be read here, perhaps by the kernel (`path`)
        size = blob.length if blob.generate is None else None
        total = blob.info.size if blob.generate is None else None
        yield Download(read_in_thread(blob.chunks()), size, total, blob.info.etag, blob.filename,
                       path=blob.path, start=blob.start)  # fmt: skip

    async def upload(self, op: Operation, params: Mapping[str, Any], body: Any) -> Any:
        self._start()
        body = body if isinstance(body, LocalFile) else as_chunks(body)
        return await self._dispatcher.call(self._context(), op, params, body=body)

    def channel(self, op: Operation, params: Mapping[str, Any]) -> AbstractAsyncContextManager[Any]:
        return self._dispatcher.channel(self._context(), op, params)

    def can_inline(self, op: Operation) -> bool:
        return self._dispatcher.is_inline(op)

    def call_inline(self, op: Operation, params: Mapping[str, Any]) -> Response:
        return self._dispatcher.call_inline(self._context(), op, params)

    async def aclose(self) -> None:
        if self._server is not None:
            await self._server.aclose()
        if self._owns_core:
            await self.core.lifecycle.stop()
            self.core.close()

    # -- files: handed over by path, the store and the kernel copy them -------------------

    async def get_file(
        self, op: Operation, params: Mapping[str, Any], target: Path, progress: Progress
    ) -> int:
        async with self.download(op, params) as download:
            whole = download.start == 0 and download.size == download.total
            if download.path is not None and whole and not is_special(target):
                await anyio.to_thread.run_sync(copy_file, download.path, target)
                if progress:
                    progress(download.size or 0, download.size)
                return download.size or 0
            return await write_chunks(download.chunks, target, download.size, progress)

    async def put_file(
        self, op: Operation, params: Mapping[str, Any], source: Path, progress: Progress
    ) -> Response:
        info: Response = await self.upload(op, params, LocalFile(source))
        if progress:
            size = os.stat(source).st_size
            progress(size, size)
        return info

    def bridged(self, name: str) -> Transport:
        """Agent `name`: links are held by the engine's server, so through its socket."""
        from .._keypairs import load_private_key
        from ._http import HttpTransport

        if self._server is None:
            home = self.core.config.home
            key = self._key or load_private_key(home.master_key)
            self._server = HttpTransport(f"unix://{home.socket}", key)
        return self._server.bridged(name)

    def clone(self) -> LocalTransport:
        """Another door to the same core, as the same identity; the core stays this one's."""
        return LocalTransport(self.core, self._key, owns_core=False)
