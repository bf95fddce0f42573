"""The HTTP data plane: a raw ASGI app that forwards requests to a proxy's targets.

`ProxyApp` serves `/p/{name}/...` on the engine's listener (mounted before the API's
routing, outside its body caps), a host name `{name}.{domain}`, or a proxy's own port
(`serve_http`). Per request: find the proxy, admit the client (before any body byte is
read), pick a target, send the request with `_upstream` (keep-alive pools, no HTTP
client library: this is the hot path), and stream the answer back, rewriting what an
app under a prefix gets wrong (redirects, cookie paths). WebSocket upgrades go to
`_ws`. Errors answer with the API's JSON envelope: 502 naming the target and the error,
504 when it does not answer in time, 503 when no target is healthy.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from time import perf_counter
from typing import Any

from ._contract import (
    SAFE_METHODS,
    Admission,
    Client,
    LiveProxyLike,
    Refused,
    RegistryLike,
    Upstream,
)
from ._mapping import (
    _REQUEST_SKIP,
    Credentials,
    Rewriter,
    Scope,
    answer_error,
    auth_mode,
    client_ip,
    forwarded_headers,
    host_of,
    target_path,
    upstream_host,
)
from ._upstream import (
    ClientGone,
    ConnectError,
    Connection,
    ResetError,
    UpstreamError,
    Upstreams,
)

__all__ = ["ProxyApp", "serve_http"]

Receive = Any
Send = Any

PATH_PREFIX = "/p/"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_SMALL = 64 << 10
"""A request body piece this small is written with its head: one send, not two."""

# -- the app ------------------------------------------------------------------------------


class ProxyApp:
    """The ASGI app of the HTTP and WebSocket data plane.

    `live`: a proxy on a port of its own (every request is for it, no prefix);
    otherwise requests name the proxy by path (`/p/{name}/`) or by Host.
    """

    def __init__(
        self,
        registry: RegistryLike,
        live: LiveProxyLike | None = None,
        upstreams: Upstreams | None = None,
    ) -> None:
        self.registry = registry
        self.live = live
        self.upstreams = upstreams or Upstreams()

    def resolve(self, scope: Scope) -> tuple[LiveProxyLike | None, str] | None:
        """The proxy a request is for and the prefix it was reached under; (None, prefix)
        for an unknown name under `/p/`; None when the request is not a proxy's."""
        if self.live is not None:
            return self.live, ""
        path: str = scope["path"]
        if path.startswith(PATH_PREFIX):
            name = path[3:].partition("/")[0]
            live = self.registry.by_name(name)
            if live is not None and live.protocol != "http":
                live = None
            return live, PATH_PREFIX + name
        host = host_of(scope)
        if host:
            live = self.registry.by_host(host)
            if live is not None and live.protocol == "http":
                return live, ""
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await self.dispatch(self.resolve(scope), scope, receive, send)

    async def dispatch(
        self,
        found: tuple[LiveProxyLike | None, str] | None,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        """Serve a request `resolve` found (404 for an unknown proxy)."""
        if found is None or found[0] is None:
            name = found[1][3:] if found else ""
            await self._refuse(scope, send, 404, f"no proxy named {name!r}" if name else "no proxy")
            return
        await self.serve(found[0], found[1], scope, receive, send)

    async def serve(
        self, live: LiveProxyLike, prefix: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        """Admit the client, then forward its request or WebSocket to `live`."""
        if prefix and scope["path"] == prefix:  # `/p/name`: relative links need the slash
            query = scope.get("query_string", b"")
            location = prefix + "/" + ("?" + query.decode("latin-1") if query else "")
            if scope["type"] == "http":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 308,
                        "headers": [(b"location", location.encode()), (b"content-length", b"0")],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
                return
        creds = Credentials(scope["headers"], scope.get("query_string", b""), live.name)
        ip = client_ip(scope)
        try:
            writes = scope["type"] != "http" or scope["method"] not in SAFE_METHODS
            client = Client(ip, creds.token, creds.link, writes=writes)
            admission = await self.registry.admit(live, client)
        except Refused as refused:
            await self._refuse(scope, send, refused.status, refused.message, refused.headers)
            return
        stats = live.stats
        stats.request()
        stats.opened()
        try:
            if scope["type"] == "http":
                await Exchange(self, live, prefix, scope, receive, send, creds, admission).run()
            else:
                from ._ws import relay

                await relay(self, live, prefix, scope, receive, send, creds, admission)
        finally:
            stats.closed()
            admission.release()

    async def _refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        if scope["type"] == "http":
            await answer_error(send, status, message, headers)
            return
        from ._ws import refuse

        await refuse(scope, send, status, message, headers)

    def close(self) -> None:
        self.upstreams.close()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


class Exchange:
    """One HTTP request through the proxy: targets tried, the answer streamed back."""

    __slots__ = (
        "admission",
        "app",
        "block",
        "body_done",
        "bytes_out",
        "chunked",
        "client_host",
        "has_body",
        "ip",
        "live",
        "method",
        "prefix",
        "query",
        "receive",
        "scope",
        "send",
        "sent_body",
    )

    def __init__(
        self,
        app: ProxyApp,
        live: LiveProxyLike,
        prefix: str,
        scope: Scope,
        receive: Receive,
        send: Send,
        creds: Credentials,
        admission: Admission,
    ) -> None:
        self.app = app
        self.live = live
        self.prefix = prefix
        self.scope = scope
        self.receive = receive
        self.send = send
        self.admission = admission
        self.ip = client_ip(scope)
        self.method: str = scope["method"]
        self.query = creds.query
        forwarded = forwarded_headers(
            scope, creds, prefix, auth_mode(live) == "token", _REQUEST_SKIP
        )
        headers = forwarded.headers
        self.client_host = forwarded.host
        self.chunked = forwarded.chunked
        if self.chunked:  # a Content-Length besides is ignored (llhttp refuses both)
            self.has_body = True
            headers.append((b"transfer-encoding", b"chunked"))
        elif forwarded.length is not None:
            self.has_body = forwarded.length.strip() != b"0"
            headers.append((b"content-length", forwarded.length))
        else:
            self.has_body = False
        self.block = b"".join(k + b": " + v + b"\r\n" for k, v in headers) + b"\r\n"
        self.sent_body = 0  # request body bytes consumed from the client
        self.body_done = not self.has_body
        self.bytes_out = 0

    def head_for(self, upstream: Upstream) -> bytes:
        path = target_path(self.scope, self.prefix, upstream.base, self.query)
        line = self.method.encode() + b" " + path + b" HTTP/1.1\r\nhost: "
        return line + upstream_host(upstream).encode() + b"\r\n" + self.block

    async def run(self) -> None:
        live = self.live
        pool = live.pool
        tried: set[Any] = set()
        error: UpstreamError | None = None
        fresh = False
        attempts = 1 + max(live.retries, 0)
        while attempts > 0:
            target = pool.pick(self.ip, frozenset(tried))
            if target is None:
                break
            upstream = target.upstream
            pool.begin(target)
            started = perf_counter()
            conn: Connection | None = None
            try:
                if fresh:
                    conn = await self.app.upstreams.connect(
                        upstream, live.verify, live.connect_timeout
                    )
                else:
                    conn = await self.app.upstreams.get(upstream, live.verify, live.connect_timeout)
                await self._send_request(conn, upstream)
                await conn.head(live.timeout)
            except ClientGone:
                if conn is not None:
                    conn.abort(ClientGone())
                pool.end(target, ok=True)
                return
            except UpstreamError as exc:
                if conn is not None:
                    conn.abort(exc)
                if not fresh and self._stale(exc, conn):
                    # A kept-alive connection the target had just closed: not its fault,
                    # and it saw nothing of this request: once more on a new connection.
                    pool.end(target, ok=True)
                    fresh = True
                    continue
                pool.end(target, ok=False)
                error = self._labelled(exc, target.upstream)
                fresh = False
                if not self._may_retry(exc):
                    break
                tried.add(target)
                attempts -= 1
                continue
            await self._answer(conn, target, started)
            return
        if error is None:
            await self._error(503, f"proxy {live.name}: no healthy target")
        else:
            await self._error(error.status, str(error))

    def _labelled(self, exc: UpstreamError, upstream: Upstream) -> UpstreamError:
        labelled = type(exc)(f"proxy {self.live.name}: target {upstream.label}: {exc}")
        return labelled

    def _stale(self, exc: UpstreamError, conn: Connection | None) -> bool:
        return (
            isinstance(exc, ResetError)
            and conn is not None
            and conn.reused
            and conn.received == 0
            and self.sent_body == 0
        )

    def _may_retry(self, exc: UpstreamError) -> bool:
        if isinstance(exc, ConnectError):
            return True  # nothing was sent: safe for any method
        if isinstance(exc, ResetError):
            return self.method in IDEMPOTENT and self.sent_body == 0
        return False

    async def _send_request(self, conn: Connection, upstream: Upstream) -> None:
        conn.begin(self.method == "HEAD")
        head = self.head_for(upstream)
        if self.body_done:
            conn.write(head)
            return
        receive = self.receive
        chunked = self.chunked
        stats = self.live.stats
        first = True
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            body: bytes = message.get("body", b"")
            more: bool = message.get("more_body", False)
            if chunked:
                data = (b"%x\r\n" % len(body) + body + b"\r\n") if body else b""
                if not more:
                    data += b"0\r\n\r\n"
            else:
                data = body
            if first and len(data) <= _SMALL:
                conn.write(head + data)
            else:
                if first:
                    conn.write(head)
                if data:
                    conn.write(data)
            first = False
            if body:
                self.sent_body += len(body)
                stats.transferred(len(body), 0)
            if not more:
                self.body_done = True
                return
            await conn.drain()
            if conn.answered:
                return  # the target answered early: the rest of the body is not sent

    async def _answer(self, conn: Connection, target: Any, started: float) -> None:
        live = self.live
        latency = perf_counter() - started
        status = conn.status
        rewriter = Rewriter(self.scope, self.prefix, target.upstream, self.client_host)
        headers = rewriter.headers(conn.headers, self.admission.set_cookie)
        if not self.body_done:
            conn.keep_alive = False  # its request body was cut short: the stream is out of step
            headers.append((b"connection", b"close"))
        live.stats.response(status, latency)
        ok = True
        try:
            await self.send({"type": "http.response.start", "status": status, "headers": headers})
            if conn.complete:
                body = conn.take()
                self.bytes_out += len(body)
                live.stats.transferred(0, len(body))
                await self.send({"type": "http.response.body", "body": body})
            else:
                ok = await self._stream(conn)
        finally:
            live.pool.end(
                target,
                ok=ok,
                latency=latency,
                bytes_in=self.sent_body,
                bytes_out=self.bytes_out,
                status=status,
            )
            self.app.upstreams.put(conn)

    async def _stream(self, conn: Connection) -> bool:
        """Relay a body that is still coming; False when the target broke it off."""
        watcher = asyncio.ensure_future(_watch(self.receive, conn))
        send = self.send
        stats = self.live.stats
        try:
            while True:
                data = await conn.read()
                if not data:
                    await send({"type": "http.response.body", "body": b""})
                    return True
                self.bytes_out += len(data)
                stats.transferred(0, len(data))
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except ClientGone:
            return True
        except UpstreamError:
            # The head is out: the client learns from its connection closing early
            # (the server closes a connection whose answer is not complete).
            return False
        finally:
            watcher.cancel()

    async def _error(self, status: int, message: str) -> None:
        self.live.stats.response(status, 0.0)
        await answer_error(self.send, status, message)


async def _watch(receive: Receive, conn: Connection) -> None:
    """Drop the target's connection when the client goes away mid-answer (the server's
    `send` says nothing when it does)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            conn.abort(ClientGone())
            return


# -- a port of its own --------------------------------------------------------------------


async def serve_http(
    sock: socket.socket,
    live: LiveProxyLike,
    registry: RegistryLike,
    ssl_context: ssl.SSLContext | None,
) -> None:
    """Serve `live` (HTTP/1.1 and WebSocket) on `sock` until cancelled."""
    from ._serve import run_server

    app = ProxyApp(registry, live)
    try:
        await run_server(app, sock, ssl_context)
    finally:
        app.close()
