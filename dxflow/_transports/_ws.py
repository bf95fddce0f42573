"""The WebSocket side of HttpTransport: `channel` operations (a shell attach)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from .._exceptions import EngineUnavailable, error_from_code

__all__ = ["WebSocketLink", "open_channel"]


class WebSocketLink:
    """The same face as the engine's own channel: `messages()` and `deliver()`."""

    def __init__(self, connection: Any, hello: dict[str, Any]) -> None:
        self._connection = connection
        self.hello = hello

    async def messages(self) -> AsyncIterator[bytes | dict[str, Any]]:
        from websockets.exceptions import ConnectionClosed

        yield self.hello
        try:
            async for message in self._connection:
                yield message if isinstance(message, bytes) else json.loads(message)
        except ConnectionClosed:
            return

    async def deliver(self, message: bytes | dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._connection.send(
                message if isinstance(message, bytes) else json.dumps(message)
            )
        except ConnectionClosed as exc:
            raise EngineUnavailable(f"the channel closed: {exc}") from None


def _target(url: str, path: str, query: dict[str, Any]) -> tuple[str, str | None]:
    """The ws:// URI, and the unix socket to dial when the engine is reached by one."""
    parts = urlsplit(url)
    suffix = path + ("?" + urlencode(query) if query else "")
    if parts.scheme in ("unix", "http+unix"):
        socket = unquote(parts.path if parts.scheme == "unix" else parts.netloc)
        return "ws://engine" + suffix, socket
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{suffix}", None


@asynccontextmanager
async def open_channel(
    url: str, path: str, query: dict[str, Any], headers: dict[str, str], verify: bool | str
) -> AsyncIterator[WebSocketLink]:
    from websockets.asyncio.client import connect, unix_connect

    uri, socket = _target(url, path, query)
    options: dict[str, Any] = {"additional_headers": headers, "max_size": 16 << 20,
                               "ping_interval": 20, "open_timeout": 30,
                               "compression": None}  # fmt: skip
    if uri.startswith("wss://"):
        context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
        if verify is False:
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        options["ssl"] = context
    try:
        opener = unix_connect(socket, uri, **options) if socket else connect(uri, **options)
        connection = await opener
    except (OSError, TimeoutError) as exc:
        raise EngineUnavailable(f"cannot open a channel to {url}: {exc}") from None
    try:
        first = json.loads(await connection.recv())
        if first.get("type") == "error" and "code" in first:
            raise error_from_code(first["code"], first["message"], first.get("details"))
        yield WebSocketLink(connection, first)
    finally:
        await connection.close()
