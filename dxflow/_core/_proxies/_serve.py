"""A proxy's own HTTP listener: uvicorn (httptools, uvloop when the engine runs on it)
serving `ProxyApp` on a socket the control plane bound, with a deadline per request head.

uvicorn bounds idle keep-alive connections but not a client that sends its head a byte
at a time (slowloris): `_guarded` closes a connection whose head is not complete within
`HEADER_TIMEOUT` seconds of its first byte, and refuses one larger than `MAX_HEAD`, as
the engine's own listener does (dxflow_server/_guard.py; the core may not import it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

from dxflow._limits import MAX_HEAD

__all__ = ["run_server"]

HEADER_TIMEOUT = 10.0
KEEP_ALIVE = 30
GRACE = 1.0
"""Seconds the connections of a cancelled listener get to finish their answers."""


class _HeadTooLarge(Exception):
    pass


def _claims_all(url: bytes) -> bool:
    return True


def _guarded(app: Any) -> type[Any]:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from ._server import hand_over, idle

    class GuardedProtocol(HttpToolsProtocol):
        def data_received(self, data: bytes) -> None:
            # Every request is the proxy's: the fast path serves it (uvicorn keeps the
            # WebSocket upgrades the fast path gives back).
            if idle(self):
                self._disarm()
                hand_over(self, self.transport, data, app, _claims_all)
                return
            super().data_received(data)

        def connection_made(self, transport: Any) -> None:
            self._head_timer: asyncio.TimerHandle | None = None
            self._head_bytes = 0
            super().connection_made(transport)
            self._arm()

        def _arm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._expire)

        def _expire(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > MAX_HEAD:
                raise _HeadTooLarge  # the parser's error: uvicorn answers 400 and closes

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

    return GuardedProtocol


async def run_server(app: Any, sock: socket.socket, ssl_context: ssl.SSLContext | None) -> None:
    """Serve `app` on `sock` until cancelled; then close it and end its connections."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http=_guarded(app),
        ws="websockets-sansio",
        lifespan="off",
        access_log=False,
        server_header=False,
        proxy_headers=False,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=int(GRACE) or 1,
        ws_per_message_deflate=False,
        ws_max_size=16 << 20,
        ws_ping_interval=None,
    )
    config.load()
    config.ssl = ssl_context  # the control plane made it (the engine's or the user's cert)
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)  # as Server.serve does
    await server.startup(sockets=[sock])
    try:
        while True:  # the Date header, once a second (uvicorn's main loop ticks 10x more)
            await server.on_tick(0)
            await asyncio.sleep(1)
    finally:
        server.should_exit = True
        await server.shutdown(sockets=[sock])
