"""Connection-level guards: a deadline for a request's head, and no reading of bodies
that were refused.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`) but not a client that
sends its request line and headers a byte at a time (slowloris): `HeadGuardedProtocol`
has the head deadline and size cap of `HeadDeadlineProtocol` (shared with a proxy's own
port). `BodyGuard` answers a refused request with `Connection: close`, so
the engine stops reading a body nobody will use instead of draining it.

Closing a socket with unread data in it makes the kernel send a reset, which can destroy
the refusal before the client reads it; so a connection closed mid-body first lingers,
as nginx does: the answer is followed by a FIN, and what the client still sends is read
and dropped, for at most `LINGER_SECONDS` and `LINGER_BYTES`, before the real close.

A request for a proxy (`/p/...`) arriving on an idle connection hands the connection to
the proxies' fast path (dxflow/_core/_proxies/_server.py), which gives it back for an
API request or a WebSocket upgrade.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dxflow._core._proxies._head import HeadDeadlineProtocol
from dxflow._core._proxies._server import hand_over, idle, wants_proxy

from ._bridges import is_link, relayed

__all__ = ["BodyGuard", "HeadGuardedProtocol", "guarded_protocol"]


LINGER_SECONDS = 5.0
LINGER_BYTES = 8 << 20


class _LingeringTransport:
    """The protocol's transport, whose close() lingers when a request body is unread."""

    def __init__(self, transport: Any, protocol: HeadGuardedProtocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self.lingering = False
        self.dropped = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or bool(self._transport.is_closing())

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        cycle = self._protocol.cycle
        if cycle is None or not cycle.more_body or not self._transport.can_write_eof():
            self._transport.close()
            return
        self.lingering = True
        self._transport.write_eof()  # after what is buffered: the answer is delivered
        self._transport.resume_reading()
        self._protocol.loop.call_later(LINGER_SECONDS, self.abort_linger)

    def drop(self, size: int) -> None:
        self.dropped += size
        if self.dropped > LINGER_BYTES:
            self.abort_linger()

    def abort_linger(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()


def _claims_prefix(url: bytes) -> bool:
    return url.startswith(b"/p/") or relayed(url) or is_link(url)


def _fast(data: bytes) -> bool:
    """Whether a request's first bytes ask for the fast path: a proxy's path, a call
    relayed to a bridged agent, or an agent's link."""
    if wants_proxy(data):
        return True
    start = data.find(b" ", 0, 16) + 1
    end = data.find(b" ", start, start + 8192)
    return start > 0 and end > 0 and (relayed(data[start:end]) or is_link(data[start:end]))


class HeadGuardedProtocol(HeadDeadlineProtocol):
    proxy_app: Any = None
    """The proxies' app (`ProxyApp`), whose requests take the fast path."""

    def connection_made(self, transport: Any) -> None:
        self._lingering = _LingeringTransport(transport, self)
        super().connection_made(self._lingering)

    def data_received(self, data: bytes) -> None:
        if self._lingering.lingering:  # the answer is out: drop the rest of the body
            self._lingering.drop(len(data))
            return
        if self.proxy_app is not None and idle(self) and _fast(data):
            self._disarm()
            hand_over(self, self._lingering._transport, data, self.proxy_app, _claims_prefix)
            return
        super().data_received(data)

    def eof_received(self) -> None:
        if self._lingering.lingering:
            self._lingering.abort_linger()


def guarded_protocol(header_timeout: float, proxy_app: Any = None) -> type[HeadGuardedProtocol]:
    """The protocol class for one server's `header_timeout` (and proxies' app)."""
    attributes = {"header_timeout": header_timeout, "proxy_app": proxy_app}
    return type("HeadGuardedProtocol", (HeadGuardedProtocol,), attributes)


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
