"""The carriers of a bridge link: one WebSocket each, message by message.

The link never asks which carrier it holds: the master's is Starlette's WebSocket, the
agent's a `websockets` client connection, the tests' an in-memory pair. Dial without
permessage-deflate (`compression=None`): compressing bulk bytes costs a twentieth of
the throughput and saves nothing on files that are already compressed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Protocol

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

if TYPE_CHECKING:
    from starlette.websockets import WebSocket
    from websockets.asyncio.client import ClientConnection

__all__ = [
    "Carrier",
    "LinkError",
    "StreamReset",
    "memory_pair",
    "starlette_carrier",
    "websockets_carrier",
]


class LinkError(Exception):
    """The link is gone or broken; `str()` says why. `clean`: closed on purpose."""

    def __init__(self, message: str = "link closed", *, clean: bool = False) -> None:
        super().__init__(message)
        self.clean = clean


class StreamReset(Exception):
    """The other side reset the stream, or refused to open it."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "stream reset")
        self.reason = reason


class Carrier(Protocol):
    """One message-oriented connection: a WebSocket."""

    async def send(self, data: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    async def close(self) -> None: ...


class _MemoryCarrier:
    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | LinkError] = asyncio.Queue()
        self._closed: LinkError | None = None
        self.peer = self

    async def send(self, data: bytes) -> None:
        if closed := self._closed or self.peer._closed:
            raise LinkError(str(closed), clean=closed.clean)
        self.peer._inbox.put_nowait(bytes(data))
        await asyncio.sleep(0)  # as a socket would now and then: one writer cannot hog the loop

    async def recv(self) -> bytes:
        item = self._closed or await self._inbox.get()
        if isinstance(item, LinkError):
            self._closed = self._closed or item
            raise LinkError(str(item), clean=item.clean)
        return item

    async def close(self) -> None:
        self.abort("connection closed", clean=True)

    def abort(self, reason: str = "connection lost", *, clean: bool = False) -> None:
        """Ends both ends; by default as a dropped connection would."""
        if self._closed is None:
            self._closed = LinkError(reason, clean=clean)
            self._inbox.put_nowait(self._closed)
            self.peer._inbox.put_nowait(LinkError(f"{reason} (by the peer)", clean=clean))


def memory_pair() -> tuple[Carrier, Carrier]:
    """Two connected in-memory carriers, for tests."""
    one, two = _MemoryCarrier(), _MemoryCarrier()
    one.peer, two.peer = two, one
    return one, two


class _StarletteCarrier:
    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except Exception as exc:
            raise LinkError(f"WebSocket send failed: {exc!r}") from exc

    async def recv(self) -> bytes:
        try:
            message = await self._ws.receive()
        except Exception as exc:
            raise LinkError(f"WebSocket receive failed: {exc!r}") from exc
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1005)
            raise LinkError(f"WebSocket closed ({code})", clean=code in (1000, 1001))
        if message.get("bytes") is None:
            raise LinkError("malformed frame: a text message")
        return bytes(message["bytes"])

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed, by either side
            await self._ws.close()


def starlette_carrier(ws: WebSocket) -> Carrier:
    """The master side: a Starlette WebSocket, already accepted (serve it without
    permessage-deflate, uvicorn's `ws_per_message_deflate=False`: see `websockets_carrier`)."""
    return _StarletteCarrier(ws)


class _WebsocketsCarrier:
    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    async def send(self, data: bytes) -> None:
        try:
            await self._conn.send(data)
        except ConnectionClosed as exc:
            raise LinkError(str(exc), clean=isinstance(exc, ConnectionClosedOK)) from exc

    async def recv(self) -> bytes:
        try:
            message = await self._conn.recv()
        except ConnectionClosed as exc:
            raise LinkError(str(exc), clean=isinstance(exc, ConnectionClosedOK)) from exc
        if isinstance(message, str):
            raise LinkError("malformed frame: a text message")
        return message

    async def close(self) -> None:
        await self._conn.close()


def websockets_carrier(conn: ClientConnection) -> Carrier:
    """The agent side: a `websockets` (asyncio) client connection.

    Dial it with `compression=None`: permessage-deflate costs some 20x in throughput here
    (measured on loopback: 20 MB/s against 350 MB/s), and the bytes are often compressed.
    """
    return _WebsocketsCarrier(conn)
