"""The carriers of a bridge link: one WebSocket each, message by message.

The link never asks which carrier it holds: master and agent speak WebSocket on the
connection itself (`_socket.FrameSocket`), the tests use an in-memory pair too. No
permessage-deflate: compressing bulk bytes costs a twentieth of the throughput and saves
nothing on files that are already compressed.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = [
    "Carrier",
    "LinkError",
    "StreamReset",
    "memory_pair",
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

    async def send(self, *parts: bytes | memoryview) -> None:
        """One message: the parts, in order (a frame's header and its payload)."""
        ...

    async def recv(self) -> bytes: ...
    async def close(self) -> None: ...


class _MemoryCarrier:
    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | LinkError] = asyncio.Queue()
        self._closed: LinkError | None = None
        self.peer = self

    async def send(self, *parts: bytes | memoryview) -> None:
        if closed := self._closed or self.peer._closed:
            raise LinkError(str(closed), clean=closed.clean)
        self.peer._inbox.put_nowait(b"".join(parts))
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
