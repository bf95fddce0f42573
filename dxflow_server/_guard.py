"""Connection-level guards: a deadline for a request's head, and no reading of bodies
that were refused.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a client that
sends its request line and headers a byte at a time (slowloris): `HeadGuardedProtocol`
closes a connection whose head is not complete within `header_timeout` seconds of its
first byte (or of the connection, if nothing comes), and one whose head passes
`MAX_HEAD` bytes. `BodyGuard` answers a refused request with `Connection: close`, so
the engine stops reading a body nobody will use instead of draining it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dxflow._limits import MAX_HEAD

__all__ = ["BodyGuard", "HeadGuardedProtocol", "guarded_protocol"]


class _HeadTooLarge(Exception):
    pass


class HeadGuardedProtocol(HttpToolsProtocol):
    header_timeout = 10.0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
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


def guarded_protocol(header_timeout: float) -> type[HeadGuardedProtocol]:
    """The protocol class for one server's `header_timeout`."""
    return type("HeadGuardedProtocol", (HeadGuardedProtocol,), {"header_timeout": header_timeout})


class BodyGuard:
    """Adds `Connection: close` to a response sent before its request's body was read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracked_receive() -> Message:
            nonlocal complete
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        async def guarded_send(message: Message) -> None:
            if message["type"] == "http.response.start" and not complete:
                headers = [*message.get("headers", []), (b"connection", b"close")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, tracked_receive, guarded_send)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return bool(value != b"0")
        if name == b"transfer-encoding":
            return True
    return False
