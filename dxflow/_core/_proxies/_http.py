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
import json
import socket
import ssl
from collections.abc import MutableMapping
from functools import lru_cache
from time import perf_counter
from typing import Any
from urllib.parse import quote

from dxflow._exceptions import error_for_status

from ._contract import Admission, Client, LiveProxyLike, Refused, RegistryLike, Upstream
from ._upstream import (
    ClientGone,
    ConnectError,
    Connection,
    ResetError,
    UpstreamError,
    Upstreams,
)

__all__ = ["ProxyApp", "serve_http"]

Scope = MutableMapping[str, Any]
Receive = Any
Send = Any

PATH_PREFIX = "/p/"
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Hop-by-hop (RFC 9110 7.6.1), and what the proxy sets itself.
_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_SKIP = _HOP | {
    b"host",
    b"content-length",
    b"expect",  # the engine's server answers 100-continue itself
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-prefix",
}
_RESPONSE_SKIP = _HOP
# uvicorn adds its own Date; a second one would be a duplicate (the fast path adds none).
_RESPONSE_SKIP_DATE = _HOP | {b"date"}
_CODES = {502: "bad_gateway", 503: "service_unavailable"}
_SMALL = 64 << 10
"""A request body piece this small is written with its head: one send, not two."""


def error_body(status: int, message: str) -> bytes:
    """The API's error envelope for a data-plane answer."""
    error = error_for_status(status, message).to_dict()
    error["code"] = _CODES.get(status, error["code"])
    return json.dumps({"error": error}, separators=(",", ":")).encode()


async def answer_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = error_body(status, message)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# -- what the client presents -------------------------------------------------------------


class Credentials:
    """The dxflow credentials of a request, found in one pass over its headers."""

    __slots__ = ("bearer", "cookies", "link", "query", "token")

    def __init__(self, headers: list[tuple[bytes, bytes]], query: bytes, name: str) -> None:
        self.token: str | None = None
        self.link: str | None = None
        self.bearer = False
        self.cookies = False
        self.query = query
        cookie_values: list[bytes] = []
        for key, value in headers:
            if key == b"authorization":
                scheme, _, credential = value.partition(b" ")
                if scheme.lower() == b"bearer" and self.token is None:
                    self.token = credential.strip().decode("latin-1")
                    self.bearer = True
            elif key == b"cookie" and b"dxflow_" in value:
                cookie_values.append(value)
        if cookie_values:
            self.cookies = True
            link_cookie = b"dxflow_link_" + name.encode()
            for value in cookie_values:
                for piece in value.split(b";"):
                    key, _, val = piece.strip().partition(b"=")
                    if key == b"dxflow_token" and self.token is None:
                        self.token = val.decode("latin-1")
                    elif key == link_cookie and self.link is None:
                        self.link = val.decode("latin-1")
        if b"dxflow_link" in query:
            kept = []
            for piece in query.split(b"&"):
                key, _, val = piece.partition(b"=")
                if key == b"dxflow_link":
                    self.link = _unquote(val)
                else:
                    kept.append(piece)
            self.query = b"&".join(kept)


def _unquote(value: bytes) -> str:
    from urllib.parse import unquote_plus

    return unquote_plus(value.decode("latin-1"))


def _strip_cookies(value: bytes) -> bytes:
    kept = [
        piece
        for piece in (p.strip() for p in value.split(b";"))
        if piece and not piece.startswith((b"dxflow_token=", b"dxflow_link_"))
    ]
    return b"; ".join(kept)


def auth_mode(live: LiveProxyLike) -> str:
    """The proxy's auth (token | link | none): with "token", an Authorization header
    carries the dxflow token and is not the target's to see."""
    mode = getattr(live, "auth", None)
    if mode is None:
        mode = getattr(getattr(live, "rules", None), "auth", "token")
    return str(mode)


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client and client[0] else "127.0.0.1"  # the unix socket: local


def host_of(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            return str(value.decode("latin-1"))
    return ""


def forwarded_headers(
    scope: Scope, creds: Credentials, prefix: str, strip_bearer: bool, skip: frozenset[bytes]
) -> tuple[list[tuple[bytes, bytes]], str]:
    """The client's headers as a target gets them: no hop-by-hop, no dxflow
    credentials, X-Forwarded-* set. Also returns the client's Host."""
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    host = b""
    for key, value in scope["headers"]:
        if key in skip:
            if key == b"host":
                host = value
            elif key == b"x-forwarded-for":
                forwarded_for = value + b", "
            continue
        if key == b"authorization" and strip_bearer and creds.bearer:
            continue
        if key == b"cookie" and creds.cookies:
            value = _strip_cookies(value)
            if not value:
                continue
        out.append((key, value))
    ip = client_ip(scope).encode()
    scheme = b"https" if scope.get("scheme") in ("https", "wss") else b"http"
    out.append((b"x-forwarded-for", forwarded_for + ip))
    out.append((b"x-forwarded-proto", scheme))
    if host:
        out.append((b"x-forwarded-host", host))
    if prefix:
        out.append((b"x-forwarded-prefix", prefix.encode()))
    return out, host.decode("latin-1")


@lru_cache(maxsize=4096)
def upstream_host(upstream: Upstream) -> str:
    """The Host a target is sent (and the authority its own absolute URLs carry)."""
    if upstream.scheme == "unix" or not upstream.host:
        return "localhost"
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    name = upstream.server_name or host
    return f"{name}:{upstream.port}" if upstream.port else name


def target_path(scope: Scope, prefix: str, base: str, query: bytes) -> bytes:
    """The path and query a target is asked for: the prefix stripped, its base added."""
    raw: bytes | None = scope.get("raw_path")
    encoded = prefix.encode()
    if raw is not None and raw.startswith(encoded):
        rest = raw[len(encoded) :]
    else:
        rest = quote(str(scope["path"])[len(prefix) :]).encode()
    path = (base.encode() + rest) if base else rest
    if not path:
        path = b"/"
    return path + b"?" + query if query else path


# -- what the target answers --------------------------------------------------------------


def _strip_base(path: str, base: str) -> str:
    if base and (path == base or path.startswith((base + "/", base + "?"))):
        return path[len(base) :] or "/"
    return path


@lru_cache(maxsize=4096)
def _origins(upstream: Upstream) -> tuple[str, ...]:
    """How a target spells its own absolute URLs (the Host it is sent)."""
    authority = upstream_host(upstream)
    scheme = "https" if upstream.scheme == "https" else "http"
    default = ":443" if scheme == "https" else ":80"
    if authority.endswith(default):
        return (f"{scheme}://{authority}", f"{scheme}://{authority[: -len(default)]}")
    return (f"{scheme}://{authority}",)


class Rewriter:
    """Maps a target's redirects and cookies back under the proxy's public URL."""

    __slots__ = ("base", "client_host", "prefix", "scope", "skip", "upstream")

    def __init__(self, scope: Scope, prefix: str, upstream: Upstream, client_host: str) -> None:
        self.scope = scope
        self.prefix = prefix
        self.upstream = upstream
        self.client_host = client_host
        self.base = upstream.base
        self.skip = _RESPONSE_SKIP_DATE if scope.get("server_date", True) else _RESPONSE_SKIP

    @property
    def public(self) -> str:
        scheme = "https" if self.scope.get("scheme") in ("https", "wss") else "http"
        host = self.client_host
        return f"{scheme}://{host}{self.prefix}" if host else self.prefix

    def location(self, value: str) -> str:
        if value.startswith("/") and not value.startswith("//"):
            return self.prefix + _strip_base(value, self.base)
        for origin in _origins(self.upstream):
            if value.startswith(origin) and value[len(origin) : len(origin) + 1] in (
                "",
                "/",
                "?",
                "#",
            ):
                rest = value[len(origin) :] or "/"
                return self.public + _strip_base(rest, self.base)
        return value

    def cookie(self, value: str) -> str | None:
        name = value.split("=", 1)[0].strip()
        if name.startswith("dxflow_"):
            return None  # a target may not set (or shadow) the engine's own cookies
        if not self.prefix and not self.base:
            return value
        parts = value.split(";")
        out = [parts[0]]
        for attr in parts[1:]:
            key, _, val = attr.partition("=")
            key = key.strip().lower()
            if key == "domain":
                continue  # the target's host is not the one the browser sees
            if key == "path":
                path = _strip_base(val.strip() or "/", self.base)
                out.append(f" Path={self.prefix}{path}")
                continue
            out.append(attr)
        return ";".join(out)

    def headers(
        self, raw: list[tuple[bytes, bytes]], set_cookie: str | None
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for name, value in raw:
            key = name.lower()
            if key in self.skip:
                continue
            if key == b"location":
                value = self.location(value.decode("latin-1")).encode("latin-1")
            elif key == b"set-cookie":
                cookie = self.cookie(value.decode("latin-1"))
                if cookie is None:
                    continue
                value = cookie.encode("latin-1")
            out.append((key, value))
        if set_cookie:
            out.append((b"set-cookie", set_cookie.encode("latin-1")))
        return out


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
            admission = await self.registry.admit(live, Client(ip, creds.token, creds.link))
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
        strip_bearer = auth_mode(live) == "token"
        headers, self.client_host = forwarded_headers(
            scope, creds, prefix, strip_bearer, _REQUEST_SKIP
        )
        self.chunked = False
        self.has_body = False
        for key, value in scope["headers"]:
            if key == b"content-length":
                self.has_body = value.strip() != b"0"
                headers.append((key, value))
            elif key == b"transfer-encoding" and b"chunked" in value.lower():
                self.has_body = self.chunked = True
        if self.chunked:
            headers = [(k, v) for k, v in headers if k != b"content-length"]
            headers.append((b"transfer-encoding", b"chunked"))
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
