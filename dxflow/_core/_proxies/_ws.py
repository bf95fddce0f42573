"""WebSocket upgrades through a proxy: the target's handshake first, then bytes or frames.

On the fast path (`_server.FastProtocol`), `tunnel` sends the client's upgrade request
to the target (prefix mapped, credentials stripped, Origin mapped) and, when the target
answers 101, splices the two connections: bytes both ways, untouched (the client and the
target negotiate subprotocols and compression between themselves), with backpressure.
Otherwise (a request that came through uvicorn's ASGI: a host name on the engine's
listener), `relay` does the same with messages:

The client's upgrade is accepted only once the target accepted its own (with the
subprotocol the target chose), so a refused or failing target answers the client with
an HTTP status, as for any request. Frames then flow both ways as messages, without
per-message compression (the client and the target may still negotiate none between
themselves: the proxy terminates both connections). A close on either side closes the
other with the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
from time import perf_counter
from typing import Any

from ._contract import Admission, Client, LiveProxyLike, Refused, Upstream
from ._http import ProxyApp, Receive, Send
from ._mapping import (
    _HOP,
    _REQUEST_SKIP,
    Credentials,
    Rewriter,
    Scope,
    auth_mode,
    client_ip,
    error_body,
    forwarded_headers,
    target_path,
    upstream_host,
)
from ._unix import connect_unix
from ._upstream import Connection, UpstreamError, describe

__all__ = ["refuse", "relay", "tunnel"]

MAX_MESSAGE = 16 << 20
"""The largest message relayed (as the engine's own WebSocket server accepts)."""

_WS_SKIP = _REQUEST_SKIP | {
    b"sec-websocket-key",
    b"sec-websocket-version",
    b"sec-websocket-extensions",
    b"sec-websocket-protocol",
    b"sec-websocket-accept",
}
# Close codes that name a state, not a reason: they are never sent in a close frame.
_RESERVED = frozenset({1005, 1006, 1015})


async def refuse(
    scope: Scope, send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    """Answer an upgrade with an HTTP status (when the server can), else close it."""
    if "websocket.http.response" in scope.get("extensions", {}):
        body = error_body(status, message)
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *(
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in (headers or {}).items()
            ),
        ]
        await send({"type": "websocket.http.response.start", "status": status, "headers": raw})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.close", "code": 4000 + status if status < 1000 else 1011})


def _origin(
    headers: list[tuple[bytes, bytes]], scope: Scope, host: str, upstream: Upstream
) -> None:
    """A same-origin page's Origin becomes the target's own (apps check Origin against
    the Host they get); another site's Origin is left as it is, for the app to refuse."""
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    own = f"{scheme}://{host}".encode("latin-1")
    for index, (key, value) in enumerate(headers):
        if key == b"origin" and value.lower() == own.lower():
            target = "https" if upstream.scheme == "https" else "http"
            headers[index] = (key, f"{target}://{upstream_host(upstream)}".encode("latin-1"))


async def _connect(
    app: ProxyApp,
    live: LiveProxyLike,
    upstream: Upstream,
    scope: Scope,
    prefix: str,
    query: bytes,
    headers: list[tuple[bytes, bytes]],
) -> Any:
    from websockets.asyncio.client import connect

    path = target_path(scope, prefix, upstream.base, query).decode("latin-1")
    scheme = "wss" if upstream.scheme == "https" else "ws"
    uri = f"{scheme}://{upstream_host(upstream)}{path}"
    options: dict[str, Any] = {
        "additional_headers": [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
        "subprotocols": scope.get("subprotocols") or None,
        "user_agent_header": None,  # the client's own User-Agent is forwarded
        "compression": None,
        "proxy": None,  # never an HTTP proxy from the environment
        "open_timeout": live.timeout,
        "ping_interval": None,  # the client's pings are answered by the engine's server
        "close_timeout": 5,
        "max_size": MAX_MESSAGE,
    }
    if upstream.opener is not None:  # an agent's, over its bridge
        return await connect(uri, sock=await upstream.opener(), **options)
    if upstream.scheme == "unix":
        return await connect(uri, sock=await connect_unix(upstream), **options)
    if upstream.scheme == "https":
        options["ssl"] = app.upstreams.tls(live.verify)
        options["server_hostname"] = upstream.server_name or upstream.host
    return await connect(uri, **options)


async def relay(
    app: ProxyApp,
    live: LiveProxyLike,
    prefix: str,
    scope: Scope,
    receive: Receive,
    send: Send,
    creds: Credentials,
    admission: Admission,
) -> None:
    """Open the target's WebSocket, accept the client's, relay until either closes."""
    from websockets.exceptions import InvalidStatus

    strip_bearer = auth_mode(live) == "token"
    forwarded = forwarded_headers(scope, creds, prefix, strip_bearer, _WS_SKIP)
    headers, host = forwarded.headers, forwarded.host
    pool = live.pool
    ip = client_ip(scope)
    tried: set[Any] = set()
    failure: tuple[int, str] | None = None
    attempts = 1 + max(live.retries, 0)
    while attempts > 0:
        target = pool.pick(ip, frozenset(tried))
        if target is None:
            break
        upstream = target.upstream
        pool.begin(target)
        started = perf_counter()
        request = list(headers)
        _origin(request, scope, host, upstream)
        try:
            ws = await _connect(app, live, upstream, scope, prefix, creds.query, request)
        except InvalidStatus as exc:  # the target answered, but not with an upgrade
            status = exc.response.status_code
            pool.end(target, ok=status < 500, status=status)
            message = f"proxy {live.name}: target {upstream.label}: refused the upgrade ({status})"
            live.stats.response(status, perf_counter() - started)
            await refuse(scope, send, status, message)
            return
        except TimeoutError:
            pool.end(target, ok=False)
            failure = (504, f"proxy {live.name}: target {upstream.label}: no answer in time")
        except Exception as exc:
            pool.end(target, ok=False)
            failure = (502, f"proxy {live.name}: target {upstream.label}: {describe(exc)}")
        else:
            latency = perf_counter() - started
            live.stats.response(101, latency)
            await _pipe(live, target, ws, scope, receive, send, admission, latency)
            return
        tried.add(target)
        attempts -= 1
    status, message = failure or (503, f"proxy {live.name}: no healthy target")
    live.stats.response(status, 0.0)
    await refuse(scope, send, status, message)


async def _pipe(
    live: LiveProxyLike,
    target: Any,
    ws: Any,
    scope: Scope,
    receive: Receive,
    send: Send,
    admission: Admission,
    latency: float,
) -> None:
    from websockets.exceptions import ConnectionClosed

    stats = live.stats
    counts = [0, 0]  # bytes in (from the client), out (to it)
    accept: dict[str, Any] = {"type": "websocket.accept", "subprotocol": ws.subprotocol}
    if admission.set_cookie:
        accept["headers"] = [(b"set-cookie", admission.set_cookie.encode("latin-1"))]
    await send(accept)

    async def to_client() -> None:
        try:
            async for data in ws:
                size = len(data)
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
                counts[1] += size
                stats.transferred(0, size)
        except ConnectionClosed:
            pass
        code = ws.close_code if ws.close_code and ws.close_code not in _RESERVED else 1000
        with contextlib.suppress(Exception):  # the client is gone already
            await send({"type": "websocket.close", "code": code, "reason": ws.close_reason or ""})

    async def to_target() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                if data is None:
                    data = message.get("text") or ""
                counts[0] += len(data)
                stats.transferred(len(data), 0)
                try:
                    await ws.send(data)
                except ConnectionClosed:
                    return
            elif kind == "websocket.disconnect":
                code = message.get("code", 1000)
                await ws.close(code=1000 if code in _RESERVED else code)
                return

    downstream = asyncio.ensure_future(to_client())
    upstream = asyncio.ensure_future(to_target())
    try:
        await asyncio.wait({downstream, upstream}, return_when=asyncio.FIRST_COMPLETED)
        if upstream.done() and not downstream.done():
            # The client closed: give the target's close a moment to come back.
            await asyncio.wait({downstream}, timeout=5)
    finally:
        for task in (downstream, upstream):
            task.cancel()
        await asyncio.gather(downstream, upstream, return_exceptions=True)
        await ws.close()
        live.pool.end(target, ok=True, latency=latency, bytes_in=counts[0], bytes_out=counts[1],
                      status=101)  # fmt: skip


# -- the fast path: a tunnel -------------------------------------------------------------

_TUNNEL_SKIP = _REQUEST_SKIP  # hop-by-hop: Connection and Upgrade are set again below


class Tunnel:
    """Two transports spliced: what one side sends, the other gets, with backpressure
    (each protocol's pause_writing pauses the other side's reading)."""

    def __init__(self, client: Any, target: Any) -> None:
        self.client = client
        self.target = target
        self.bytes_in = 0
        self.bytes_out = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def from_client(self, data: bytes) -> None:
        self.bytes_in += len(data)
        self.target.write(data)

    def from_target(self, data: bytes) -> None:
        self.bytes_out += len(data)
        self.client.write(data)

    def lost(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


def _raw_answer(status: int, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> bytes:
    from ._server import _STATUS

    lines = [_STATUS.get(status) or b"HTTP/1.1 %d \r\n" % status]
    lines += [k + b": " + v + b"\r\n" for k, v in headers]
    return b"".join(lines) + b"\r\n" + body


def _error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> bytes:
    body = error_body(status, message)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    return _raw_answer(status, raw, body)


async def tunnel(
    app: ProxyApp, live: LiveProxyLike, prefix: str, scope: Scope, client: Any
) -> None:
    """Admit the upgrade, open the target's, and splice them (see the module's doc)."""
    creds = Credentials(scope["headers"], scope.get("query_string", b""), live.name)
    ip = client_ip(scope)
    try:
        knock = Client(ip, creds.token, creds.link, writes=True)  # a WebSocket: both ways
        admission = await app.registry.admit(live, knock)
    except Refused as refused:
        client.answer_and_close(_error_answer(refused.status, refused.message, refused.headers))
        return
    stats = live.stats
    stats.request()
    stats.opened()
    try:
        await _open(app, live, prefix, scope, client, creds, admission)
    finally:
        stats.closed()
        admission.release()
        if not client.closed:
            client.transport.close()


async def _open(
    app: ProxyApp,
    live: LiveProxyLike,
    prefix: str,
    scope: Scope,
    client: Any,
    creds: Credentials,
    admission: Admission,
) -> None:
    forwarded = forwarded_headers(scope, creds, prefix, auth_mode(live) == "token", _TUNNEL_SKIP)
    headers, host = forwarded.headers, forwarded.host
    upgrade = next((v for k, v in scope["headers"] if k == b"upgrade"), b"websocket")
    headers += [(b"connection", b"Upgrade"), (b"upgrade", upgrade)]
    pool = live.pool
    ip = client_ip(scope)
    tried: set[Any] = set()
    failure: tuple[int, str] | None = None
    attempts = 1 + max(live.retries, 0)
    while attempts > 0:
        target = pool.pick(ip, frozenset(tried))
        if target is None:
            break
        upstream = target.upstream
        pool.begin(target)
        started = perf_counter()
        request = list(headers)
        _origin(request, scope, host, upstream)
        path = target_path(scope, prefix, upstream.base, creds.query)
        head = b"GET " + path + b" HTTP/1.1\r\nhost: " + upstream_host(upstream).encode()
        head += b"\r\n" + b"".join(k + b": " + v + b"\r\n" for k, v in request) + b"\r\n"
        conn: Connection | None = None
        try:
            conn = await app.upstreams.connect(upstream, live.verify, live.connect_timeout)
            conn.begin(False)
            conn.write(head)
            await conn.head(live.timeout)
        except UpstreamError as exc:
            if conn is not None:
                conn.abort(exc)
            pool.end(target, ok=False)
            failure = (exc.status, f"proxy {live.name}: target {upstream.label}: {exc}")
            tried.add(target)
            attempts -= 1
            continue
        latency = perf_counter() - started
        stats = live.stats
        stats.response(conn.status, latency)
        if conn.status != 101 or not conn.upgraded:
            await _refused_upgrade(conn, scope, prefix, upstream, client, admission)
            pool.end(target, ok=conn.status < 500, latency=latency, status=conn.status)
            return
        rewriter = Rewriter(scope, prefix, upstream, host)
        answer = rewriter.headers(conn.headers, admission.set_cookie)
        answer += [(b"connection", b"Upgrade")]
        answer += [(k.lower(), v) for k, v in conn.headers if k.lower() == b"upgrade"]
        splice = Tunnel(client.transport, conn.transport)
        try:
            client.transport.write(_raw_answer(101, answer) + b"".join(conn.early))
            splice.bytes_out += sum(map(len, conn.early))
            conn.early.clear()
            conn.tunnel = splice
            client.tunnel = splice
            for data in client._early or ():
                splice.from_client(data)
            client._early = None
            client.transport.resume_reading()
            if conn.lost or client.closed:
                splice.lost()
            await splice.done
        finally:
            conn.close()
            stats.transferred(splice.bytes_in, splice.bytes_out)
            pool.end(target, ok=True, latency=latency, bytes_in=splice.bytes_in,
                     bytes_out=splice.bytes_out, status=101)  # fmt: skip
        return
    status, message = failure or (503, f"proxy {live.name}: no healthy target")
    live.stats.response(status, 0.0)
    client.answer_and_close(_error_answer(status, message))


async def _refused_upgrade(
    conn: Connection, scope: Scope, prefix: str, upstream: Upstream, client: Any,
    admission: Admission,
) -> None:  # fmt: skip
    """The target answered the upgrade with no 101: that answer, then the end."""
    rewriter = Rewriter(scope, prefix, upstream, "")
    headers = [(k, v) for k, v in rewriter.headers(conn.headers, None) if k not in _HOP]
    headers.append((b"connection", b"close"))
    client.transport.write(_raw_answer(conn.status, headers))
    try:
        while data := await conn.read():
            client.transport.write(data)
    except UpstreamError:
        pass
    conn.close()
