"""LocalTransport: calls the core in this process, with no serialization."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio

from .._core import Blob, Context, EngineCore, LocalFile
from .._keypairs import PrivateKey
from .._models import Response
from .._operations import Operation
from ._base import Download, Transport, as_chunks

__all__ = ["LocalTransport"]


class LocalTransport(Transport):
    in_process = True

    def __init__(
        self, core: EngineCore, key: PrivateKey | None = None, *, owns_core: bool = True
    ) -> None:
        self.core = core
        self._key = key
        self._owns_core = owns_core
        self._dispatcher = core.dispatcher
        self._master = core.local_context()

    def _context(self) -> Context:
        # With a key the identity is looked up on every call, so unregistering or
        # rotating the key takes effect at once, as it does over HTTP.
        return self._master if self._key is None else self.core.local_context(self._key)

    async def call(self, op: Operation, params: Mapping[str, Any]) -> Response:
        result: Response = await self._dispatcher.call(self._context(), op, params)
        return result

    async def stream(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Response]:
        async for item in self._dispatcher.stream(self._context(), op, params):
            yield item

    @asynccontextmanager
    async def download(self, op: Operation, params: Mapping[str, Any]) -> AsyncIterator[Download]:
        blob: Blob = await self._dispatcher.call(self._context(), op, params)
        blob.claimed()  # the bytes will be read here, perhaps by the kernel (`path`)
        chunks = iter(blob.chunks())

        async def read() -> AsyncIterator[bytes]:
            while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
                yield chunk

        size = blob.length if blob.generate is None else None
        total = blob.info.size if blob.generate is None else None
        yield Download(read(), size, total, blob.info.etag, blob.filename,
                       path=blob.path, start=blob.start)  # fmt: skip

    async def upload(self, op: Operation, params: Mapping[str, Any], body: Any) -> Any:
        body = body if isinstance(body, LocalFile) else as_chunks(body)
        return await self._dispatcher.call(self._context(), op, params, body=body)

    def channel(self, op: Operation, params: Mapping[str, Any]) -> AbstractAsyncContextManager[Any]:
        return self._dispatcher.channel(self._context(), op, params)

    def can_inline(self, op: Operation) -> bool:
        return self._dispatcher.is_inline(op)

    def call_inline(self, op: Operation, params: Mapping[str, Any]) -> Response:
        return self._dispatcher.call_inline(self._context(), op, params)

    async def aclose(self) -> None:
        if self._owns_core:
            self.core.close()
