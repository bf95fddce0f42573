"""The WebSocket side of HttpTransport: `channel` operations (a shell attach)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlencode, urlsplit

from .._exceptions import EngineUnavailable, TransportError
from .._wire import Message, decode_frame, encode_frame, error_from_reply, hello

__all__ = ["WebSocketLink", "open_channel", "ssl_context"]


class WebSocketLink:
    """The same face as the engine's own channel: `messages()` and `deliver()`."""

    def __init__(self, connection: Any, hello: dict[str, Any]) -> None:
        self._connection = connection
        self.hello = hello

    async def messages(self) -> AsyncIterator[Message]:
        from websockets.exceptions import ConnectionClosed

        yield self.hello
        try:
            async for frame in self._connection:
                yield decode_frame(frame)
        except ConnectionClosed:
            return

    async def deliver(self, message: Message) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self._connection.send(encode_frame(message))
        except ConnectionClosed as exc:
            raise TransportError(f"the channel closed: {exc}") from None


def _target(url: str, path: str, query: dict[str, Any]) -> tuple[str, str | None]:
    """The ws:// URI, and the unix socket to dial when the engine is reached by one."""
    parts = urlsplit(url)
    suffix = path + ("?" + urlencode(query) if query else "")
    if parts.scheme in ("unix", "http+unix"):
        socket = unquote(parts.path if parts.scheme == "unix" else parts.netloc)
        return "ws://engine" + suffix, socket
    scheme = "wss" if parts.scheme == "https" else "ws"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}{suffix}", None


def ssl_context(verify: bool | str) -> ssl.SSLContext:
    """The TLS context for `verify`: True (system CAs), a CA bundle path, or False."""
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


@asynccontextmanager
async def open_channel(
    url: str, path: str, query: dict[str, Any], headers: dict[str, str], verify: bool | str
) -> AsyncIterator[WebSocketLink]:
    from websockets.asyncio.client import connect, unix_connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

    uri, socket = _target(url, path, query)
    options: dict[str, Any] = {"additional_headers": headers, "max_size": 16 << 20,
                               "ping_interval": 20, "open_timeout": 30,
                               "compression": None}  # fmt: skip
    if uri.startswith("wss://"):
        options["ssl"] = ssl_context(verify)
    try:
        opener = unix_connect(socket, uri, **options) if socket else connect(uri, **options)
        connection = await opener
    except InvalidStatus as refused:  # an HTTP answer instead of the upgrade
        reply = refused.response
        body = bytes(reply.body or b"")
        raise error_from_reply(reply.status_code, body, reply.reason_phrase) from None
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        raise EngineUnavailable(f"cannot open a channel to {url}: {exc}") from None
    try:
        try:
            first = hello(await connection.recv())
        except (OSError, ConnectionClosed) as exc:
            raise TransportError(f"the channel to {url} broke as it opened: {exc}") from None
        yield WebSocketLink(connection, first)
    finally:
        await connection.close()
