"""A minimal WebSocket server for tests: reads an upgrade request's head, then hands the
connection to the link's own `_socket.accept` (as the master's fast path does)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from dxflow._core._bridges._socket import FrameSocket, accept, handshake_error


class _Head(asyncio.Protocol):
    def __init__(self, on_socket: Callable[[FrameSocket], Any]) -> None:
        self._on_socket = on_socket
        self._data = b""

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._data += data
        end = self._data.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self._data[:end].split(b"\r\n")[1:]
        headers = [(n.strip().lower(), v.strip()) for n, _, v in (x.partition(b":") for x in lines)]
        problem = handshake_error(headers)
        if problem is not None:
            body = problem.encode()
            self._transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s"
                                  % (len(body), body))  # fmt: skip
            self._transport.close()
            return
        self._on_socket(accept(self._transport, headers, self._data[end + 4 :]))


@contextlib.asynccontextmanager
async def upgrade_server(on_socket: Callable[[FrameSocket], Any]) -> AsyncIterator[int]:
    """A server on a free loopback port (yielded) calling `on_socket` for each WebSocket."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Head(on_socket), "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
