"""The HTTP data plane (dxflow/_core/_proxies/_http.py, _upstream.py) against real
loopback targets, with small fakes of the control plane's contract (registry, pool,
stats): prefix mapping, forwarded headers, rewriting, streaming with bounded memory,
keep-alive reuse, errors (502/503/504), retries, broken clients and targets."""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from dxflow._core._proxies._contract import Admission, Client, Refused, Upstream
from dxflow._core._proxies._http import ProxyApp
from dxflow._core._proxies._serve import run_server

# -- fakes of the control plane -----------------------------------------------------------


@dataclass(eq=False)
class FakeTarget:
    upstream: Upstream
    healthy: bool = True
    open_connections: int = 0


class FakePool:
    def __init__(self, upstreams: list[Upstream]) -> None:
        self.targets = [FakeTarget(u) for u in upstreams]
        self.turn = 0
        self.ended: list[tuple[str, bool]] = []

    def pick(self, client_ip: str, exclude: frozenset[Any] = frozenset()) -> FakeTarget | None:
        for _ in range(len(self.targets)):
            target = self.targets[self.turn % len(self.targets)]
            self.turn += 1
            if target.healthy and target not in exclude:
                return target
        return None

    def begin(self, target: FakeTarget) -> None:
        target.open_connections += 1

    def end(self, target: FakeTarget, *, ok: bool, latency: float | None = None,
            bytes_in: int = 0, bytes_out: int = 0, status: int | None = None) -> None:  # fmt: skip
        target.open_connections -= 1
        self.ended.append((target.upstream.label, ok))


@dataclass
class FakeStats:
    requests: int = 0
    statuses: list[int] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    open: int = 0

    def request(self) -> None:
        self.requests += 1

    def response(self, status: int, latency: float) -> None:
        self.statuses.append(status)

    def transferred(self, bytes_in: int, bytes_out: int) -> None:
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1


@dataclass
class FakeLive:
    name: str
    pool: FakePool
    protocol: str = "http"
    prefix: str = ""
    timeout: float = 10.0
    connect_timeout: float = 5.0
    verify: bool = True
    retries: int = 1
    auth: str = "token"
    stats: FakeStats = field(default_factory=FakeStats)


class FakeRegistry:
    """Admits whoever presents `token` (or anyone, when it is None)."""

    def __init__(self, *lives: FakeLive, token: str | None = "secret") -> None:  # noqa: S107
        self.lives = {live.name: live for live in lives}
        self.token = token
        self.clients: list[Client] = []
        self.released = 0
        self.hosts: dict[str, FakeLive] = {}
        self.refusal: Refused | None = None

    def by_name(self, name: str) -> FakeLive | None:
        return self.lives.get(name)

    def by_host(self, host: str) -> FakeLive | None:
        return self.hosts.get(host.partition(":")[0])

    async def admit(self, live: FakeLive, client: Client) -> Admission:
        self.clients.append(client)
        if self.refusal is not None:
            raise self.refusal
        cookie = None
        if client.link == "opensesame":
            cookie = f"dxflow_link_{live.name}=opensesame; Path=/p/{live.name}/; HttpOnly"
        elif self.token is not None and client.token != self.token:
            raise Refused(401, "a token is needed", {"WWW-Authenticate": "Bearer"}, "auth")

        def release() -> None:
            self.released += 1

        return Admission("tester", cookie, release)


def upstream(port: int, label: str | None = None, base: str = "") -> Upstream:
    return Upstream(label or f"127.0.0.1:{port}", "http", "127.0.0.1", port, base=base)


AUTH = {"Authorization": "Bearer secret"}

# -- real servers on loopback ---------------------------------------------------------------


def run(main: Coroutine[Any, Any, None]) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(main, 120))


def listening() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    return sock


def dead_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[int]:
    """`app` (ASGI) served by uvicorn on a loopback port, for the test's duration."""
    sock = listening()
    port: int = sock.getsockname()[1]
    task = asyncio.ensure_future(run_server(app, sock, None))
    try:
        yield port
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """A misbehaving target: `handle` gets each connection's streams."""

    async def guarded(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(guarded, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def body_of(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


async def target_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The test target: what a web app under a prefix does."""
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if "=" in p)
    headers: list[tuple[bytes, bytes]] = [(b"content-type", b"application/json")]
    status = 200
    payload: Any = None
    if path == "/redirect":
        status, headers = 302, [(b"location", query.get("to", "/login").encode())]
    elif path == "/cookie":
        headers += [
            (b"set-cookie", b"session=1; Path=/; Domain=127.0.0.1; HttpOnly"),
            (b"set-cookie", b"dxflow_token=forged; Path=/"),
        ]
        payload = {}
    elif path == "/big":
        size, piece = int(query["n"]), b"x" * (1 << 20)
        framing = [] if "chunked" in query else [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": framing})
        while size > 0:
            chunk = piece[: min(size, len(piece))]
            size -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": size > 0})
        return
    elif path == "/upload":
        digest, size = hashlib.sha256(), 0
        async for chunk in body_of(receive):
            digest.update(chunk)
            size += len(chunk)
        payload = {"size": size, "sha256": digest.hexdigest()}
    elif path == "/slow":
        await asyncio.sleep(30)
    else:
        payload = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode(),
            "headers": [[k.decode(), v.decode()] for k, v in scope["headers"]],
            "port": scope["client"][1] if scope["client"] else None,
        }
    body = json.dumps(payload).encode() if payload is not None else b""
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@asynccontextmanager
async def proxy(
    *lives: FakeLive,
    token: str | None = "secret",  # noqa: S107
) -> AsyncIterator[tuple[str, FakeRegistry, ProxyApp]]:
    """The proxies served under /p/{name}/ (as on the engine's listener)."""
    registry = FakeRegistry(*lives, token=token)
    app = ProxyApp(registry)
    async with serving(app) as port:
        yield f"http://127.0.0.1:{port}", registry, app
    app.close()


def headers_of(reply: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in reply.json()["headers"]}


# -- tests --------------------------------------------------------------------------------


def test_prefix_stripped_and_forwarded_headers_set() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _), httpx.AsyncClient() as client:
                reply = await client.get(
                    f"{url}/p/web/some/where?x=1&dxflow_link=zzz&y=2",
                    headers={
                        **AUTH,
                        "X-Forwarded-For": "10.9.9.9",
                        "Cookie": "a=b; dxflow_token=secret; dxflow_link_web=s",
                    },
                )
                assert reply.status_code == 200
                seen = reply.json()
                assert seen["path"] == "/some/where"
                assert seen["query"] == "x=1&y=2"  # the link's secret never reaches it
                headers = headers_of(reply)
                assert "authorization" not in headers
                assert headers["cookie"] == "a=b"
                assert headers["x-forwarded-for"] == "10.9.9.9, 127.0.0.1"
                assert headers["x-forwarded-proto"] == "http"
                assert headers["x-forwarded-host"] == url.removeprefix("http://")
                assert headers["x-forwarded-prefix"] == "/p/web"
                assert headers["host"] == f"127.0.0.1:{port}"
                assert registry.clients[0].token == "secret"
                assert registry.clients[0].link == "zzz"
                assert registry.released == 1
                assert live.stats.statuses == [200]

    run(main())


def test_bare_prefix_redirects_to_its_slash_and_unknown_names_are_404() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                reply = await client.get(f"{url}/p/web?a=1", headers=AUTH)
                assert reply.status_code == 308
                assert reply.headers["location"] == "/p/web/?a=1"
                missing = await client.get(f"{url}/p/nope/", headers=AUTH)
                assert missing.status_code == 404
                assert missing.json()["error"]["code"] == "not_found"

    run(main())


def test_refusal_answers_with_its_status_envelope_and_headers_before_any_body() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _), httpx.AsyncClient() as client:
                reply = await client.post(f"{url}/p/web/upload", content=b"x" * 1000)
                assert reply.status_code == 401
                assert reply.headers["www-authenticate"] == "Bearer"
                assert reply.json()["error"] == {
                    "code": "unauthenticated",
                    "message": "a token is needed",
                    "details": {},
                }
                registry.refusal = Refused(429, "slow down", {"Retry-After": "3"}, "rate")
                limited = await client.get(f"{url}/p/web/", headers=AUTH)
                assert limited.status_code == 429
                assert limited.headers["retry-after"] == "3"
                assert live.stats.requests == 0  # refused: never forwarded

    run(main())


def test_redirects_and_cookies_are_mapped_under_the_prefix() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                path = await client.get(f"{url}/p/web/redirect?to=/login", headers=AUTH)
                assert path.headers["location"] == "/p/web/login"
                absolute = await client.get(
                    f"{url}/p/web/redirect?to=http://127.0.0.1:{port}/abs?q=1", headers=AUTH
                )
                assert absolute.headers["location"] == f"{url}/p/web/abs?q=1"
                elsewhere = await client.get(
                    f"{url}/p/web/redirect?to=https://example.org/x", headers=AUTH
                )
                assert elsewhere.headers["location"] == "https://example.org/x"
                cookies = await client.get(f"{url}/p/web/cookie", headers=AUTH)
                assert cookies.headers.get_list("set-cookie") == [
                    "session=1; Path=/p/web/; HttpOnly"  # no Domain, no dxflow_ cookie
                ]

    run(main())


def test_a_link_sets_its_cookie_on_the_answer() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _), httpx.AsyncClient() as client:
                reply = await client.get(f"{url}/p/web/?dxflow_link=opensesame")
                assert reply.status_code == 200
                assert reply.json()["query"] == ""
                assert "dxflow_link_web=opensesame" in reply.headers["set-cookie"]
                again = await client.get(f"{url}/p/web/")  # the cookie alone, now
                assert again.status_code == 200
                assert registry.clients[-1].link == "opensesame"
                assert "cookie" not in headers_of(again)

    run(main())


def test_a_target_base_path_is_added_and_mapped_back() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port, base="/app")]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                seen = await client.get(f"{url}/p/web/x", headers=AUTH)
                assert seen.json()["path"] == "/app/x"

    run(main())


def test_keep_alive_connections_are_reused() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, app), httpx.AsyncClient() as client:
                ports = set()
                for _ in range(20):
                    reply = await client.get(f"{url}/p/web/", headers=AUTH)
                    ports.add(reply.json()["port"])
                assert len(ports) == 1  # one connection to the target, twenty requests
                assert app.upstreams.opened == 1

    run(main())


def test_large_bodies_stream_both_ways_with_bounded_memory() -> None:
    size = 512 << 20

    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient(timeout=60) as client:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                got = 0
                async with client.stream("GET", f"{url}/p/web/big?n={size}", headers=AUTH) as reply:
                    assert reply.headers["content-length"] == str(size)
                    async for chunk in reply.aiter_raw():
                        got += len(chunk)
                assert got == size
                digest = hashlib.sha256()

                async def upload() -> AsyncIterator[bytes]:
                    piece = b"y" * (1 << 20)
                    for _ in range(size >> 20):
                        digest.update(piece)
                        yield piece

                reply = await client.post(f"{url}/p/web/upload", content=upload(), headers=AUTH)
                assert reply.json() == {"size": size, "sha256": digest.hexdigest()}
                grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
                assert grown < 128 << 10, f"peak RSS grew {grown} KiB for {size >> 20} MiB each way"
                assert live.stats.bytes_out >= size and live.stats.bytes_in == size

    run(main())


def test_chunked_answers_are_relayed() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                reply = await client.get(f"{url}/p/web/big?n=3000000&chunked=1", headers=AUTH)
                assert reply.headers["transfer-encoding"] == "chunked"
                assert reply.content == b"x" * 3000000

    run(main())


def test_a_refusing_target_is_a_502_naming_it() -> None:
    async def main() -> None:
        port = dead_port()
        live = FakeLive("web", FakePool([upstream(port)]), retries=0)
        async with proxy(live) as (url, registry, _), httpx.AsyncClient() as client:
            reply = await client.get(f"{url}/p/web/", headers=AUTH)
            assert reply.status_code == 502
            error = reply.json()["error"]
            assert error["code"] == "bad_gateway"
            assert error["message"] == f"proxy web: target 127.0.0.1:{port}: connection refused"
            assert live.pool.ended == [(f"127.0.0.1:{port}", False)]
            assert registry.released == 1

    run(main())


def test_no_healthy_target_is_a_503() -> None:
    async def main() -> None:
        pool = FakePool([upstream(dead_port())])
        pool.targets[0].healthy = False
        live = FakeLive("web", pool)
        async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
            reply = await client.get(f"{url}/p/web/", headers=AUTH)
            assert reply.status_code == 503
            assert reply.json()["error"]["message"] == "proxy web: no healthy target"

    run(main())


def test_a_hanging_target_is_a_504_after_the_timeout() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]), timeout=0.5)
            async with proxy(live) as (url, _, _), httpx.AsyncClient(timeout=30) as client:
                reply = await client.get(f"{url}/p/web/slow", headers=AUTH)
                assert reply.status_code == 504
                assert reply.json()["error"]["code"] == "timed_out"
                assert "no answer within 0.5 s" in reply.json()["error"]["message"]

    run(main())


def test_an_idempotent_request_is_retried_on_another_target() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(dead_port(), "dead"), upstream(port)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                reply = await client.put(f"{url}/p/web/upload", content=b"abc", headers=AUTH)
                assert reply.status_code == 200
                assert reply.json()["size"] == 3
                assert live.pool.ended == [("dead", False), (f"127.0.0.1:{port}", True)]

    run(main())


def test_a_post_the_target_dropped_is_not_retried() -> None:
    requests = []

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append(await reader.readuntil(b"\r\n\r\n"))  # then close, no answer

    async def main() -> None:
        async with raw_server(drop) as bad, serving(target_app) as good:
            live = FakeLive("web", FakePool([upstream(bad, "bad"), upstream(good)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                reply = await client.post(f"{url}/p/web/upload", content=b"abc", headers=AUTH)
                assert reply.status_code == 502
                assert "target bad:" in reply.json()["error"]["message"]
                assert live.pool.ended == [("bad", False)]
                live.pool.turn = 0  # the dropping target first again
                retried = await client.get(f"{url}/p/web/", headers=AUTH)  # a GET: retried
                assert retried.status_code == 200
                assert len(requests) == 2

    run(main())


def test_a_target_closing_mid_answer_closes_the_client_connection() -> None:
    async def half(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000)
        await writer.drain()

    async def main() -> None:
        async with raw_server(half) as bad:
            live = FakeLive("web", FakePool([upstream(bad, "bad")]))
            async with proxy(live) as (url, registry, _), httpx.AsyncClient() as client:
                with pytest.raises(httpx.RemoteProtocolError):
                    await client.get(f"{url}/p/web/", headers=AUTH)
                assert live.pool.ended == [("bad", False)]
                assert registry.released == 1

    run(main())


def test_a_client_leaving_mid_body_frees_everything() -> None:
    got = asyncio.Event()

    async def main() -> None:
        async def slow_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            await reader.read(1)
            got.set()
            await reader.read()  # until the proxy drops it

        async with raw_server(slow_reader) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _):
                host, _, number = url.removeprefix("http://").partition(":")
                _, writer = await asyncio.open_connection(host, int(number))
                writer.write(
                    b"POST /p/web/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
                    b"Content-Length: 1000000\r\n\r\n" + b"a" * 1000
                )
                await writer.drain()
                await asyncio.wait_for(got.wait(), 30)
                writer.close()
                for _ in range(300):
                    if registry.released:
                        break
                    await asyncio.sleep(0.1)
                assert registry.released == 1
                assert live.stats.open == 0

    run(main())


def test_a_client_leaving_mid_answer_stops_the_download() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _):
                host, _, number = url.removeprefix("http://").partition(":")
                reader, writer = await asyncio.open_connection(host, int(number))
                writer.write(
                    b"GET /p/web/big?n=10000000000 HTTP/1.1\r\nHost: x\r\n"
                    b"Authorization: Bearer secret\r\n\r\n"
                )
                await reader.readexactly(1 << 20)
                writer.close()
                for _ in range(300):
                    if registry.released:
                        break
                    await asyncio.sleep(0.1)
                assert registry.released == 1
                assert live.stats.bytes_out < 1 << 30

    run(main())


def test_an_own_port_proxy_has_no_prefix() -> None:
    from dxflow._core._proxies._http import serve_http

    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            registry = FakeRegistry(live)
            sock = listening()
            own = sock.getsockname()[1]
            task = asyncio.ensure_future(serve_http(sock, live, registry, None))  # type: ignore[arg-type]
            try:
                async with httpx.AsyncClient() as client:
                    reply = await client.get(f"http://127.0.0.1:{own}/a/b", headers=AUTH)
                    assert reply.json()["path"] == "/a/b"
                    assert "x-forwarded-prefix" not in headers_of(reply)
                    moved = await client.get(
                        f"http://127.0.0.1:{own}/redirect?to=/in", headers=AUTH
                    )
                    assert moved.headers["location"] == "/in"
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    run(main())


def test_host_routing_reaches_the_proxy_without_prefix() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _), httpx.AsyncClient() as client:
                registry.hosts["web.example.test"] = live
                reply = await client.get(
                    f"{url}/x", headers={**AUTH, "Host": "web.example.test:8080"}
                )
                assert reply.json()["path"] == "/x"

    run(main())
