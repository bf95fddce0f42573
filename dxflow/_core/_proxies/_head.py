"""A deadline and a size cap for each request head, on uvicorn's httptools protocol.

uvicorn bounds idle keep-alive connections but not a client that sends its head a byte
at a time (slowloris): a connection whose head is not complete within `header_timeout`
seconds of its first byte (or of the connection) is closed, and one whose head passes
`MAX_HEAD` bytes gets uvicorn's own 400. The engine's listener
(dxflow_server/_guard.py) and a proxy's own port (`_serve`) both build on it. Imported
only when a server starts: it loads uvicorn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dxflow._limits import MAX_HEAD

__all__ = ["HeadDeadlineProtocol"]


class _HeadTooLarge(Exception):
    pass


class HeadDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0

    def connection_made(self, transport: Any) -> None:
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        super().connection_made(transport)
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD:
            raise _HeadTooLarge  # the parser turns it into uvicorn's own 400 and close

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value))
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)
