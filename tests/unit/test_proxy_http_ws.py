"""WebSocket upgrades through the HTTP data plane, to a real loopback WebSocket server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dxflow._core._proxies import _server
from tests.unit.test_proxy_http import (
    AUTH,
    FakeLive,
    FakePool,
    dead_port,
    proxy,
    run,
    serving,
    upstream,
)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Echoes frames; says what it saw first (path, subprotocol, headers)."""
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close", "code": 1008})
        return
    protocols = scope.get("subprotocols") or []
    await send({"type": "websocket.accept", "subprotocol": protocols[0] if protocols else None})
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    await send(
        {"type": "websocket.send", "text": f"{scope['path']}?{scope['query_string'].decode()}"}
    )
    await send({"type": "websocket.send", "text": headers.get("authorization", "-")})
    await send({"type": "websocket.send", "text": headers.get("x-forwarded-prefix", "-")})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == "bye":
            await send({"type": "websocket.close", "code": 4321})
            return
        if message.get("bytes") is not None:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:
            await send({"type": "websocket.send", "text": message["text"]})


@pytest.fixture(params=["tunnel", "asgi"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The fast path's tunnel (bytes), or uvicorn's ASGI WebSocket and `relay` (frames),
    as on the engine's listener for a proxy reached by host name."""
    if request.param == "asgi":
        monkeypatch.setattr(_server, "idle", lambda back: False)  # no hand-over to the fast path
    return str(request.param)


def test_websocket_echo_through_the_prefix(path: str) -> None:
    async def main() -> None:
        async with serving(echo_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, registry, _):
                ws_url = url.replace("http://", "ws://") + "/p/web/chat?room=1"
                async with connect(
                    ws_url, additional_headers=AUTH, subprotocols=["v2.echo"], compression=None
                ) as ws:  # type: ignore[list-item]
                    assert ws.subprotocol == "v2.echo"
                    assert await ws.recv() == "/chat?room=1"
                    assert await ws.recv() == "-"  # the dxflow token is not forwarded
                    assert await ws.recv() == "/p/web"
                    await ws.send("hello")
                    assert await ws.recv() == "hello"
                    await ws.send(b"\x00\x01" * 100_000)
                    assert await ws.recv() == b"\x00\x01" * 100_000
                    await ws.send("bye")
                    with pytest.raises(ConnectionClosed):
                        await ws.recv()
                    assert ws.close_code == 4321
                for _ in range(100):
                    if registry.released:
                        break
                    await asyncio.sleep(0.05)
                assert registry.released == 1
                assert live.stats.bytes_in >= 200_000 and live.stats.bytes_out >= 200_000

    run(main())


def test_websocket_refused_without_a_token_and_by_a_dead_target(path: str) -> None:
    async def main() -> None:
        live = FakeLive("web", FakePool([upstream(dead_port())]), retries=0)
        async with proxy(live) as (url, _, _):
            ws_url = url.replace("http://", "ws://") + "/p/web/"
            with pytest.raises(InvalidStatus) as refused:
                await connect(ws_url)
            assert refused.value.response.status_code == 401
            with pytest.raises(InvalidStatus) as dead:
                await connect(ws_url, additional_headers=AUTH)
            assert dead.value.response.status_code == 502
            assert b"connection refused" in dead.value.response.body

    run(main())


def test_websocket_a_target_refusing_the_upgrade_is_relayed(path: str) -> None:
    async def main() -> None:
        async with serving(echo_app) as port:
            live = FakeLive("web", FakePool([upstream(port)]))
            async with proxy(live) as (url, _, _):
                ws_url = url.replace("http://", "ws://") + "/p/web/refuse"
                with pytest.raises(InvalidStatus) as refused:
                    await connect(ws_url, additional_headers=AUTH)
                assert refused.value.response.status_code == 403

    run(main())
