"""Connections to a proxy's targets: keep-alive pools and HTTP/1.1 answers read by hand.

The hot path of the HTTP data plane, so no HTTP client library: a request head is
written as bytes, an answer is parsed by `httptools` (llhttp, in C) inside an asyncio
protocol, and bodies flow both ways in the pieces the sockets give, with backpressure:
a target's answer pauses its socket once `HIGH_WATER` bytes wait for a slow client, and
a request body waits for the target's socket to drain. No body is ever held whole.

Errors are typed by when they happen, because that decides what the caller may do:
`ConnectError` (nothing was sent: any request may go to another target), `ResetError`
(the connection broke before the answer's head: an idempotent request whose body was
not consumed may), `HeadTimeout` (504), `BodyError` (after the head: the client's
connection can only be closed).
"""

from __future__ import annotations

import asyncio
import errno
import ssl
import time
from collections import deque
from typing import Any

import httptools

from ._contract import Upstream
from ._unix import connect_unix

__all__ = [
    "BodyError",
    "ClientGone",
    "ConnectError",
    "Connection",
    "HeadTimeout",
    "ResetError",
    "UpstreamError",
    "Upstreams",
]

IDLE_PER_TARGET = 64
"""Idle keep-alive connections kept per target (more are closed when released)."""
IDLE_SECONDS = 30.0
"""An idle connection older than this is closed rather than reused."""
HIGH_WATER = 1 << 20
"""Answer bytes waiting for the client before the target's socket is paused."""


class UpstreamError(Exception):
    """A target failed: `status` is the answer to give (502, or 504 for a timeout)."""

    status = 502


class ConnectError(UpstreamError):
    """No connection: nothing was sent, so any request may try another target."""


class ConnectTimeout(ConnectError):
    status = 504


class ResetError(UpstreamError):
    """The connection broke after the request was (partly) sent, before an answer."""


class HeadTimeout(UpstreamError):
    status = 504


class BodyError(UpstreamError):
    """The connection broke, or the answer was malformed, after its head."""


class ClientGone(Exception):
    """The client went away while its answer was flowing."""


_REASONS = {
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset",
    errno.ENOENT: "no such socket",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
    errno.EACCES: "permission denied",
}


def describe(exc: BaseException) -> str:
    """A short reason for an OS or TLS error, for the 502's body."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verification failed ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error ({exc.reason or exc})"
    if isinstance(exc, OSError):
        if exc.errno in _REASONS:
            return _REASONS[exc.errno]
        return (exc.strerror or str(exc) or type(exc).__name__).lower()
    return str(exc) or type(exc).__name__


class Connection(asyncio.Protocol):
    """One keep-alive connection to a target, carrying one exchange at a time."""

    def __init__(self, pool: Upstreams, key: tuple[Upstream, bool]) -> None:
        self._pool = pool
        self.key = key
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = None  # type: ignore[assignment]  # set at once
        self._parser = httptools.HttpResponseParser(self)
        self._stale_parser = False
        self.lost = False
        self.reused = False
        self.idle_since = 0.0
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._timeout = 0.0
        self.upgraded = False
        self.early: list[bytes] = []  # a tunnel's first bytes, before it is wired
        self.tunnel: Any = None
        self._begin(False)

    # -- one exchange ---------------------------------------------------------------

    def _begin(self, head_only: bool) -> None:
        self._head: asyncio.Future[None] = self.loop.create_future()
        self._head_only = head_only
        self._interim = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.keep_alive = True
        self.until_close = False
        self.complete = False
        self.received = 0
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    def begin(self, head_only: bool) -> None:
        """Ready for a new request (`head_only`: a HEAD, whose answer has no body)."""
        if self._stale_parser:  # the last answer's body was skipped: llhttp still waits for it
            self._parser = httptools.HttpResponseParser(self)
            self._stale_parser = False
        self._begin(head_only)

    @property
    def reusable(self) -> bool:
        return self.complete and self.keep_alive and not self.lost and self._error is None

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the target's socket is full (or until it answers or breaks)."""
        if self._write_paused and not self.lost and not self._head.done():
            self._drain = self.loop.create_future()
            await self._drain
        if self.lost and not self._head.done():
            raise ResetError("connection reset")

    @property
    def answered(self) -> bool:
        return self._head.done()

    async def head(self, seconds: float) -> None:
        """Wait for the answer's head (status and headers) for at most `seconds`."""
        head = self._head
        if not head.done():
            # One timer per connection, pushed forward lazily (not one per request).
            self._deadline = self.loop.time() + seconds
            self._timeout = seconds
            if self._timer is None:
                self._timer = self.loop.call_later(seconds, self._head_timed_out)
            await head
        head.result()

    def _head_timed_out(self) -> None:
        self._timer = None
        head = self._head
        if head.done() or self.lost:
            return
        left = self._deadline - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._head_timed_out)
            return
        head.set_exception(HeadTimeout(f"no answer within {self._timeout:g} s"))
        self._error = head.exception()

    def take(self) -> bytes:
        """What is buffered of the body now (all of it, when `complete`)."""
        chunks = self._chunks
        if not chunks:
            return b""
        data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
        chunks.clear()
        self._buffered = 0
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def read(self) -> bytes:
        """The next piece of the body; b"" at its end."""
        while True:
            if self._chunks:
                return self.take()
            if self.complete:
                return b""
            if self._error is not None:
                raise self._error
            self._waiter = self.loop.create_future()
            await self._waiter

    def abort(self, error: BaseException) -> None:
        """Stop the exchange: `read` raises `error`, the connection is dropped."""
        if self._error is None:
            self._error = error
        self._wake()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.upgraded:  # a WebSocket tunnel's bytes, not HTTP
            if self.tunnel is not None:
                self.tunnel.from_target(data)
            else:
                self.early.append(data)
            return
        self.received += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:  # a 101: what follows is the tunnel's
            self.upgraded = True
            rest = data[exc.args[0] :]
            if rest:
                self.early.append(rest)
        except httptools.HttpParserError as exc:
            error = BodyError if self._head.done() else ResetError
            self.abort(error(f"invalid answer ({exc})"))
            if not self._head.done():
                self._head.set_exception(self._error)  # type: ignore[arg-type]

    def eof_received(self) -> bool | None:
        return None  # close: connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pool.forget(self)
        if self.tunnel is not None:
            self.tunnel.lost()
        head = self._head
        if not head.done():
            reason = describe(exc) if exc else "closed the connection before answering"
            head.set_exception(ResetError(reason))
            head.exception()  # retrieved: nobody may await it (an idle connection)
        elif not self.complete and self._error is None:
            if self.until_close:
                self.complete = True  # an answer without a length ends with the connection
            else:
                self._error = BodyError("closed the connection mid-answer")
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.tunnel is not None:
            self.tunnel.client.pause_reading()  # the target is slow: so is the client

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.tunnel is not None:
            self.tunnel.client.resume_reading()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            self._interim = True  # 100 Continue, 103 Early Hints: the answer follows
            self.headers = []
            return
        self.status = status
        self.keep_alive = self._parser.should_keep_alive()
        if self._head_only or status in (204, 304):
            self.complete = True
            self._stale_parser = self._head_only
        else:
            self.until_close = _until_close(self.headers)
        if not self._head.done():
            self._head.set_result(None)
        self._wake()  # a request body still being sent stops: the target answered

    def on_body(self, body: bytes) -> None:
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self.complete = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _until_close(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, _ in headers:
        lower = name.lower()
        if lower == b"content-length" or lower == b"transfer-encoding":
            return False
    return True


class Upstreams:
    """Keep-alive connections to targets, per (target, verify)."""

    def __init__(self) -> None:
        self._idle: dict[tuple[Upstream, bool], list[Connection]] = {}
        self._contexts: dict[bool, ssl.SSLContext] = {}
        self.opened = 0
        """Connections opened so far (tests and stats: keep-alive at work)."""

    async def get(self, upstream: Upstream, verify: bool, connect_timeout: float) -> Connection:
        """An idle connection to `upstream`, or a new one."""
        key = (upstream, verify)
        idle = self._idle.get(key)
        if idle:
            now = time.monotonic()
            while idle:
                conn = idle.pop()
                if not conn.lost and now - conn.idle_since < IDLE_SECONDS:
                    conn.reused = True
                    return conn
                conn.close()
        return await self.connect(upstream, verify, connect_timeout)

    async def connect(self, upstream: Upstream, verify: bool, seconds: float) -> Connection:
        """A new connection (raises `ConnectError`)."""
        loop = asyncio.get_running_loop()
        key = (upstream, verify)

        def factory() -> Connection:
            return Connection(self, key)

        try:
            async with asyncio.timeout(seconds):
                if upstream.opener is not None:  # an agent's, over its bridge
                    sock = await upstream.opener()
                    _, conn = await loop.create_connection(factory, sock=sock)
                elif upstream.scheme == "unix":
                    sock = await connect_unix(upstream)  # never by its path: see _unix
                    _, conn = await loop.create_connection(factory, sock=sock)
                elif upstream.scheme == "https":
                    name = upstream.server_name or upstream.host
                    _, conn = await loop.create_connection(
                        factory,
                        upstream.host or "",
                        upstream.port or 443,
                        ssl=self.tls(verify),
                        server_hostname=name,
                    )
                else:
                    host, port = upstream.host or "", upstream.port or 80
                    _, conn = await loop.create_connection(factory, host, port)
        except TimeoutError:
            raise ConnectTimeout(f"no connection within {seconds:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(describe(exc)) from None
        self.opened += 1
        return conn

    def tls(self, verify: bool) -> ssl.SSLContext:
        context = self._contexts.get(verify)
        if context is None:
            context = ssl.create_default_context()
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            self._contexts[verify] = context
        return context

    def put(self, conn: Connection) -> None:
        """An exchange is over: keep the connection for the next one, or close it."""
        if not conn.reusable:
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, [])
        now = time.monotonic()
        if idle and now - idle[0].idle_since > IDLE_SECONDS:
            idle.pop(0).close()  # the oldest has waited too long: nobody needs it
        if len(idle) >= IDLE_PER_TARGET:
            conn.close()
            return
        conn.idle_since = now
        idle.append(conn)

    def forget(self, conn: Connection) -> None:
        idle = self._idle.get(conn.key)
        if idle and conn in idle:
            idle.remove(conn)

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
