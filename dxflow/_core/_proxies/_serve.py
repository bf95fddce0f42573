"""A proxy's own HTTP listener: uvicorn (httptools, uvloop when the engine runs on it)
serving `ProxyApp` on a socket the control plane bound, with a deadline per request head.

Each request head has a deadline (`HEADER_TIMEOUT`) and a size cap, as on the engine's
own listener: both build on `_head.HeadDeadlineProtocol`.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from typing import Any

__all__ = ["run_server"]

HEADER_TIMEOUT = 10.0
KEEP_ALIVE = 30
GRACE = 1.0
"""Seconds the connections of a cancelled listener get to finish their answers."""


def _claims_all(url: bytes) -> bool:
    return True


def _guarded(app: Any) -> type[Any]:
    from ._head import HeadDeadlineProtocol
    from ._server import hand_over, idle

    class GuardedProtocol(HeadDeadlineProtocol):
        header_timeout = HEADER_TIMEOUT

        def data_received(self, data: bytes) -> None:
            # Every request is the proxy's: the fast path serves it (uvicorn keeps the
            # WebSocket upgrades the fast path gives back).
            if idle(self):
                self._disarm()
                hand_over(self, self.transport, data, app, _claims_all)
                return
            super().data_received(data)

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
