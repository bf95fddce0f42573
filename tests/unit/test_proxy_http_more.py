"""The HTTP data plane's less common roads: HEAD, pipelined requests, 100-continue,
unix-socket and HTTPS targets (verification on and off), a TLS port of its own; the
answers counted by class per target."""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from dxflow._core._proxies._contract import Upstream
from dxflow._core._proxies._http import serve_http
from dxflow._core._proxies._pool import Pool
from dxflow._core._proxies._serve import run_server
from dxflow._core._proxies._tls import self_signed
from tests.unit.test_proxy_http import (
    AUTH,
    FakeLive,
    FakePool,
    FakeRegistry,
    dead_port,
    listening,
    proxy,
    raw_server,
    run,
    serving,
    target_app,
    upstream,
)
from tests.unit.test_proxy_http_ws import echo_app


async def _exchange(url: str, request: bytes, until: bytes, count: int = 1) -> bytes:
    host, _, port = url.removeprefix("http://").partition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    data = b""
    while data.count(until) < count:
        chunk = await asyncio.wait_for(reader.read(65536), 30)
        if not chunk:
            break
        data += chunk
    writer.close()
    return data


def test_head_then_get_on_the_same_connection() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                head = await client.head(f"{url}/p/web/big?n=1000", headers=AUTH)
                assert head.status_code == 200
                assert head.headers["content-length"] == "1000"
                assert head.content == b""
                got = await client.get(f"{url}/p/web/big?n=1000", headers=AUTH)
                assert got.content == b"x" * 1000

    run(main())


def test_pipelined_requests_are_answered_in_order() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _):
                one = (
                    b"GET /p/web/first HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n\r\n"
                )
                two = one.replace(b"first", b"second")
                data = await _exchange(url, one + two, b'"port"', 2)
                assert data.count(b"HTTP/1.1 200 OK") == 2
                assert data.index(b"/first") < data.index(b"/second")

    run(main())


def test_expect_100_continue_is_answered_before_the_body() -> None:
    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _):
                host, _, number = url.removeprefix("http://").partition(":")
                reader, writer = await asyncio.open_connection(host, int(number))
                writer.write(
                    b"POST /p/web/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer secret\r\n"
                    b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n"
                )
                interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                assert interim.startswith(b"HTTP/1.1 100")
                writer.write(b"hello")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
                assert head.startswith(b"HTTP/1.1 200")
                writer.close()

    run(main())


def test_a_unix_socket_target(tmp_path: Path) -> None:
    async def main() -> None:
        path = str(tmp_path / "app.sock")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(path)
        sock.listen(16)
        task = asyncio.ensure_future(run_server(target_app, sock, None))
        try:
            live = FakeLive("web", FakePool([Upstream(f"unix:{path}", "unix", socket_path=path)]))
            async with proxy(live) as (url, _, _), httpx.AsyncClient() as client:
                reply = await client.get(f"{url}/p/web/here", headers=AUTH)
                assert reply.json()["path"] == "/here"
                assert dict(reply.json()["headers"])["host"] == "localhost"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())


def _tls(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    self_signed(cert, key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context, cert


def test_https_targets_are_verified_unless_told_not_to(tmp_path: Path) -> None:
    server_context, _ = _tls(tmp_path)

    async def main() -> None:
        sock = listening()
        port = sock.getsockname()[1]
        task = asyncio.ensure_future(run_server(target_app, sock, server_context))
        try:
            secure = Upstream(f"https://127.0.0.1:{port}", "https", "127.0.0.1", port)
            checked = FakeLive("checked", FakePool([secure]), retries=0)
            trusting = FakeLive("trusting", FakePool([secure]), verify=False)
            async with proxy(checked, trusting) as (url, _, _), httpx.AsyncClient() as client:
                refused = await client.get(f"{url}/p/checked/", headers=AUTH)
                assert refused.status_code == 502
                assert "certificate verification failed" in refused.json()["error"]["message"]
                reply = await client.get(f"{url}/p/trusting/x", headers=AUTH)
                assert reply.status_code == 200 and reply.json()["path"] == "/x"
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())


def test_a_tls_port_of_its_own(tmp_path: Path) -> None:
    server_context, cert = _tls(tmp_path)

    async def main() -> None:
        async with serving(target_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            sock = listening()
            own = sock.getsockname()[1]
            registry = FakeRegistry(live)
            task = asyncio.ensure_future(serve_http(sock, live, registry, server_context))  # type: ignore[arg-type]
            try:
                async with httpx.AsyncClient(
                    verify=ssl.create_default_context(cafile=cert)
                ) as client:
                    reply = await client.get(f"https://127.0.0.1:{own}/x", headers=AUTH)
                    assert reply.json()["path"] == "/x"
                    assert dict(reply.json()["headers"])["x-forwarded-proto"] == "https"
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    run(main())


def test_answers_ended_by_close_and_interim_answers() -> None:
    async def until_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it")
        await writer.drain()

    async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()

    async def main() -> None:
        async with raw_server(until_close) as closing, raw_server(early_hints) as hinting:
            one = FakeLive("one", FakePool([upstream(closing)]))
            two = FakeLive("two", FakePool([upstream(hinting)]))
            async with proxy(one, two) as (url, _, app), httpx.AsyncClient() as client:
                reply = await client.get(f"{url}/p/one/", headers=AUTH)
                assert reply.status_code == 200 and reply.content == b"all of it"
                for _ in range(3):
                    hinted = await client.get(f"{url}/p/two/", headers=AUTH)
                    assert hinted.status_code == 200 and hinted.content == b"ok"
                assert app.upstreams.opened == 2  # the hinting target's connection is reused

    run(main())


def test_a_port_of_its_own_closes_a_connection_that_sends_no_head(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Slowloris on a proxy's own port: nothing sent within the head deadline, closed."""
    from dxflow._core._proxies import _serve

    monkeypatch.setattr(_serve, "HEADER_TIMEOUT", 0.2)

    async def main() -> None:
        live = FakeLive("web", FakePool([upstream(9)]))
        sock = listening()
        task = asyncio.ensure_future(serve_http(sock, live, FakeRegistry(live), None))  # type: ignore[arg-type]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", sock.getsockname()[1])
            assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the engine
            writer.close()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(main())


async def _status_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers `/s/{status}` with that status (a WebSocket: the echo)."""
    if scope["type"] == "websocket":
        await echo_app(scope, receive, send)
        return
    status = int(scope["path"].rsplit("/", 1)[1])
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def test_answers_are_counted_by_class_per_target() -> None:
    from websockets.asyncio.client import connect

    from dxflow._display import text_of
    from dxflow._models import ProxyStats

    async def main() -> None:
        async with serving(_status_app) as a, serving(_status_app) as b:
            pool = Pool([upstream(a), upstream(b)])  # round robin: a, b, a, b, ...
            live = FakeLive("web", pool, retries=0)  # type: ignore[arg-type]
            gone = FakeLive("gone", Pool([upstream(dead_port())]), retries=0)  # type: ignore[arg-type]
            async with proxy(live, gone) as (url, _, _), httpx.AsyncClient() as client:
                for status in (200, 404, 201, 503, 302):
                    reply = await client.get(f"{url}/p/web/s/{status}", headers=AUTH)
                    assert reply.status_code == status
                # the 6th goes to b: an upgrade is its 1xx
                ws_url = url.replace("http://", "ws://") + "/p/web/ws"
                async with connect(ws_url, additional_headers=AUTH, compression=None) as ws:
                    await ws.recv()
                assert (await client.get(f"{url}/p/gone/", headers=AUTH)).status_code == 502
                first, second = pool.targets
                for _ in range(200):  # the upgrade is counted when its tunnel has ended
                    if second.responses.get("1xx"):
                        break
                    await asyncio.sleep(0.05)
        assert first.stats().responses == {"2xx": 2, "3xx": 1}
        assert second.stats().responses == {"1xx": 1, "4xx": 1, "5xx": 1}
        # a target that never answered gave no status: its 502 is the proxy's, a failure
        dead = gone.pool.targets[0].stats()
        assert dead.responses == {} and dead.failures == 1
        assert live.stats.statuses == [200, 404, 201, 503, 302, 101]

        stats = ProxyStats(name="web", since=datetime.now(UTC), targets=[first.stats()])
        text = text_of(stats)
        assert text is not None and "RESPONSES" in text and "2xx 2, 3xx 1" in text

    run(main())
