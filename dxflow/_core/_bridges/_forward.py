"""Calls forwarded to an agent: HTTP/1.1 over the link's streams, as the master.

Each agent has one `Forwarder`: an httpx client whose connections are streams of the
agent's link (to the agent engine's own socket), kept alive and reused like any
connection pool, and the master's token on the agent, renewed by the handshake the SDK
uses. A WebSocket (a shell attach) gets a socket pair, one end spliced into a stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import typing
from collections.abc import Awaitable, Callable
from typing import Any

import httpcore
import httpx

from ..._keypairs import PrivateKey
from .._context import Context
from ._frames import MAX_DATA
from ._handshake import Signer
from ._link import LinkError, Stream, StreamReset, splice
from ._names import CALLER_HEADER, CALLER_PERMISSIONS_HEADER

__all__ = ["Forwarder", "stream_socket"]

Opener = Callable[[], Awaitable[Stream]]
POOL = 32
"""Idle connections kept per agent; more run at once when asked (each is one stream)."""
KEEPALIVE = 2.0
"""Seconds an idle pooled connection is reused: well under the agent's own keep-alive
(`keep_alive_timeout`, 5 s by default), so the master never sends a request on a
connection the agent has closed meanwhile (its END still on its way)."""


class _NetStream(httpcore.AsyncNetworkStream):
    def __init__(self, stream: Stream) -> None:
        self._stream = stream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            # A whole frame at once (httpcore asks 64 KiB; h11 takes any size): a quarter
            # of the reads, and of the chunks the relay passes on, for bulk answers. A
            # view, not a copy: h11 only appends it to its buffer.
            return typing.cast(bytes, await self._stream.read(max(max_bytes, MAX_DATA)))
        except (StreamReset, LinkError) as exc:
            raise httpcore.ReadError(f"the bridge link: {exc}") from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            await self._stream.write(buffer)
        except (StreamReset, LinkError) as exc:
            raise httpcore.WriteError(f"the bridge link: {exc}") from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    def get_extra_info(self, info: str) -> Any:
        # httpcore asks before it reuses an idle connection: one the agent closed is not
        return self._stream.readable if info == "is_readable" else None


class _Network(httpcore.AsyncNetworkBackend):
    def __init__(self, opener: Opener) -> None:
        self._open = opener

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
                          local_address: str | None = None,
                          socket_options: typing.Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:  # fmt: skip
        try:
            return _NetStream(await self._open())
        except (StreamReset, LinkError) as exc:
            raise httpcore.ConnectError(f"the bridge link: {exc}") from None

    async def connect_unix_socket(self, path: str, timeout: float | None = None,  # noqa: ASYNC109
                                  socket_options: typing.Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:  # fmt: skip
        return await self.connect_tcp("agent", 80)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def stream_socket(stream: Stream, tasks: set[asyncio.Task[None]]) -> socket.socket:
    """A connected socket whose other end is spliced into `stream` (for code that wants
    a socket: a WebSocket client, a proxy's connection), by a task kept in `tasks`."""
    near, far = socket.socketpair()
    reader, writer = await asyncio.open_connection(sock=far)

    async def run() -> None:
        try:
            await splice(stream, reader, writer)
        finally:
            writer.close()

    task = asyncio.get_running_loop().create_task(run())
    tasks.add(task)
    task.add_done_callback(tasks.discard)
    return near


class Forwarder:
    """One agent's door on the master."""

    def __init__(self, name: str, opener: Opener, key: PrivateKey) -> None:
        self.name = name
        self._open = opener
        self.pool = httpcore.AsyncConnectionPool(
            network_backend=_Network(opener), max_keepalive_connections=POOL,
            keepalive_expiry=KEEPALIVE,
        )  # fmt: skip
        """HTTP/1.1 connections to the agent (each a stream of its link), for the relay."""
        transport = httpx.AsyncHTTPTransport()
        transport._pool = self.pool  # the pool is httpx's one seam here
        timeout = httpx.Timeout(None, connect=30.0)
        self.client = httpx.AsyncClient(base_url="http://agent", transport=transport,
                                        timeout=timeout)  # fmt: skip
        self._signer = Signer(self.client, key)
        self._splices: set[asyncio.Task[None]] = set()

    async def headers(self, ctx: Context, renew: bool = False) -> dict[str, str]:
        """The master's token on the agent, and who the call is really for."""
        assert ctx.identity is not None
        if renew:
            self._signer.forget()
        auth = await self._signer.headers()
        return {**auth, CALLER_HEADER: ctx.identity.name,
                CALLER_PERMISSIONS_HEADER: str(ctx.identity.permissions)}  # fmt: skip

    async def socket(self) -> socket.socket:
        """A connected socket whose other end is a stream to the agent's engine."""
        return await stream_socket(await self._open(), self._splices)

    async def aclose(self) -> None:
        for task in list(self._splices):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.client.aclose()
