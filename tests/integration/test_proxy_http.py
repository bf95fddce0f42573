"""HTTP and WebSocket proxies on a real engine (`dxflow boot up`): a real loopback web app
reached under `/p/{name}/` with its token, redirects mapped, a WebSocket echo, the API on
the same keep-alive connection, and a 1 GiB download with the engine's memory flat."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

import dxflow
from dxflow._core._proxies._serve import run_server
from tests.integration.conftest import Booted, boot
from tests.integration.conftest import dxflow as dxflow_cli
from tests.unit.test_proxy_http import target_app
from tests.unit.test_proxy_http_ws import echo_app


async def _app(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    if scope["type"] == "websocket":
        await echo_app(scope, receive, send)
    else:
        await target_app(scope, receive, send)


@pytest.fixture(scope="module")
def target() -> Iterator[int]:
    """The web app, served on a loopback port by a loop thread of its own."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    loop = asyncio.new_event_loop()
    task = loop.create_task(run_server(_app, sock, None))

    def serve() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    loop.call_soon_threadsafe(task.cancel)
    thread.join(10)


@pytest.fixture(scope="module")
def token(booted: Booted) -> str:
    with dxflow.Engine(booted.url, key=booted.master_key) as engine:
        return engine.token().token


@pytest.fixture(scope="module")
def web(booted: Booted, target: int, token: str) -> str:
    reply = httpx.post(
        f"{booted.url}/api/proxies",
        json={"name": "web", "targets": [f"127.0.0.1:{target}"]},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert reply.status_code in (200, 201), reply.text
    return f"{booted.url}/p/web"


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise AssertionError("no VmHWM")


def test_requests_reach_the_app_under_its_prefix(web: str, token: str, target: int) -> None:
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client() as client:
        assert client.get(f"{web}/echo").status_code == 401
        seen = client.get(f"{web}/echo?a=1", headers=auth).json()
        assert seen["path"] == "/echo" and seen["query"] == "a=1"
        headers = dict(seen["headers"])
        assert "authorization" not in headers
        assert headers["x-forwarded-prefix"] == "/p/web"
        moved = client.get(f"{web}/redirect?to=/login", headers=auth)
        assert moved.headers["location"] == "/p/web/login"
        absolute = client.get(f"{web}/redirect?to=http://127.0.0.1:{target}/x", headers=auth)
        assert absolute.headers["location"] == f"{web}/x"
        # The same keep-alive connection serves the API next, then the proxy again.
        assert (
            client.get(web.replace("/p/web", "/api/proxies/web"), headers=auth).status_code == 200
        )
        assert client.get(f"{web}/echo", headers=auth).status_code == 200
        assert client.get(web, headers=auth).status_code == 308


def test_websocket_echo_on_the_engine(web: str, token: str) -> None:
    async def main() -> None:
        async with connect(
            web.replace("http://", "ws://") + "/ws",
            additional_headers={"Authorization": f"Bearer {token}"},
            compression=None,
        ) as ws:
            assert await ws.recv() == "/ws?"
            await ws.recv()
            await ws.recv()
            for text in ("one", "two"):
                await ws.send(text)
                assert await ws.recv() == text

    asyncio.run(main())


def test_a_gigabyte_download_keeps_the_engine_memory_flat(
    booted: Booted, web: str, token: str
) -> None:
    size = 1 << 30
    before = _peak_rss(booted.pid)
    got = 0
    with httpx.stream(
        "GET", f"{web}/big?n={size}", headers={"Authorization": f"Bearer {token}"}, timeout=120
    ) as reply:
        for chunk in reply.iter_raw(1 << 20):
            got += len(chunk)
    assert got == size
    grown = _peak_rss(booted.pid) - before
    assert grown < 32 << 20, f"the engine's peak RSS grew {grown >> 20} MiB"


def test_a_host_name_reaches_the_proxy_through_the_engine(
    tmp_path: Path, target: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`proxy_domain`: Host web.example.test is proxy `web`, with no prefix (the ASGI
    road: uvicorn, the engine's app, the data plane; the WebSocket relayed as messages)."""
    monkeypatch.setenv("DXFLOW_PROXY_DOMAIN", "example.test")
    engine = boot(tmp_path / "home")
    try:
        with dxflow.Engine(engine.url, key=engine.master_key) as sdk:
            token = sdk.token().token
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(
            f"{engine.url}/api/proxies",
            json={"name": "web", "targets": [f"127.0.0.1:{target}"]},
            headers=auth,
        )
        assert created.status_code in (200, 201), created.text
        named = {**auth, "Host": "web.example.test"}
        seen = httpx.get(f"{engine.url}/deep/path", headers=named).json()
        assert seen["path"] == "/deep/path"
        assert "x-forwarded-prefix" not in dict(seen["headers"])
        moved = httpx.get(f"{engine.url}/redirect?to=/in", headers=named)
        assert moved.headers["location"] == "/in"
        assert httpx.get(f"{engine.url}/api/proxies/web", headers=auth).status_code == 200

        async def echo() -> None:
            port = int(engine.url.rpartition(":")[2])
            async with connect(
                f"ws://web.example.test:{port}/ws",  # the Host; the socket goes to loopback
                host="127.0.0.1",
                port=port,
                additional_headers=auth,
                compression=None,
            ) as ws:
                assert await ws.recv() == "/ws?"
                await ws.recv()
                assert await ws.recv() == "-"  # no prefix
                await ws.send("hello")
                assert await ws.recv() == "hello"

        asyncio.run(echo())
    finally:
        dxflow_cli("boot", "down", "--home", engine.home, check=False)


def test_removing_a_proxy_ends_what_it_serves(booted: Booted, target: int, token: str) -> None:
    """A download and a WebSocket in flight under /p/ end when their proxy is removed: no
    one keeps reaching the target through a proxy that is gone."""
    auth = {"Authorization": f"Bearer {token}"}
    made = httpx.post(f"{booted.url}/api/proxies", headers=auth,
                      json={"name": "going", "targets": [f"127.0.0.1:{target}"]})  # fmt: skip
    assert made.status_code in (200, 201), made.text
    size = 1 << 30

    async def main() -> tuple[int, bool]:
        ws_url = booted.url.replace("http", "ws", 1) + "/p/going/ws"
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("GET", f"{booted.url}/p/going/big?n={size}", headers=auth) as reply,
            connect(ws_url, additional_headers=auth) as ws,
        ):
            assert await ws.recv() == "/ws?"  # the echo app says what it saw first
            await ws.recv()
            await ws.recv()
            await ws.send("before")
            assert await ws.recv() == "before"
            chunks = reply.aiter_raw(1 << 16)
            got = len(await anext(chunks))
            gone = await client.request("DELETE", f"{booted.url}/api/proxies/going", headers=auth)
            assert gone.status_code == 200, gone.text
            with contextlib.suppress(httpx.HTTPError):
                async for chunk in chunks:
                    got += len(chunk)
            try:
                await asyncio.wait_for(ws.recv(), 10)
                ws_open = True
            except Exception:  # ConnectionClosed: what the test wants
                ws_open = False
            return got, ws_open

    got, ws_open = asyncio.run(main())
    assert got < size, "the download went on after its proxy was removed"
    assert not ws_open, "the WebSocket stayed open after its proxy was removed"
    assert httpx.get(f"{booted.url}/p/going/", headers=auth).status_code == 404


def test_a_read_only_key_only_reads_through_a_proxy(
    booted: Booted, web: str, tmp_path: Path
) -> None:
    """READ_ONLY blocks every mutating call, through a proxy too: GET passes, POST and a
    WebSocket upgrade are 403, and the target never sees them."""
    with dxflow.Engine(booted.url, key=booted.master_key) as master:
        pair = master.keys.generate(tmp_path / "reader")
        master.keys.register(pair.public, "proxy-reader", ["PROXY", "READ_ONLY"])
    with dxflow.Engine(booted.url, key=pair.private) as reader:
        auth = {"Authorization": f"Bearer {reader.token().token}"}
    assert httpx.get(f"{web}/", headers=auth).status_code == 200
    posted = httpx.post(f"{web}/upload", headers=auth, content=b"x")
    assert posted.status_code == 403 and "READ_ONLY" in posted.text, posted.text

    async def upgrade() -> None:
        async with connect(web.replace("http://", "ws://") + "/ws", additional_headers=auth):
            pass

    with pytest.raises(Exception, match="403"):
        asyncio.run(upgrade())
