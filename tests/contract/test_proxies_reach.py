"""The SDK's user story end to end: make a proxy, then reach a real loopback web app at
`p.url` with a token, through an access link, or in public, and see it in `p.stats()`."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from dxflow import AsyncEngine, Engine
from dxflow._runner import Runner

from ..conftest import SDKS, AsyncDriven

BOTH_SDKS = pytest.mark.parametrize("sdk", SDKS, indirect=True)
SERVED = pytest.mark.parametrize("transport", ["http"])
"""Under `/p/` a proxy needs the engine's server: the REST door's leg."""


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def served(request: pytest.FixtureRequest) -> None:
    """The core knows where it is served, as `dxflow boot up` tells it."""
    if "transport" in request.fixturenames and request.getfixturevalue("transport") == "http":
        core = request.getfixturevalue("core")
        core.proxies.base_url = request.getfixturevalue("server_url")


@BOTH_SDKS
@SERVED
def test_a_token_a_link_or_nothing_opens_p_url(engine: Engine, target: str) -> None:
    proxy = engine.proxies.create("web", target=target)
    assert proxy.url == f"{engine.url}/p/web/"
    with httpx.Client(timeout=30) as client:
        assert client.get(f"{proxy.url}x").status_code == 401
        token = engine.token().token
        reply = client.get(f"{proxy.url}x?y=1", headers={"Authorization": f"Bearer {token}"})
        assert (reply.status_code, reply.text) == (200, "hello from /x?y=1")  # prefix stripped
        proxy.update(auth="none")
        assert client.get(proxy.url).text == "hello from /"
        proxy.update(auth="link")
        assert client.get(proxy.url).status_code in (401, 403)
    link = proxy.link("10m")
    assert link.url is not None
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        assert browser.get(link.url).text.startswith("hello from /")
        assert browser.get(f"{proxy.url}next").text == "hello from /next"  # the cookie
    proxy.unlink(link.id)
    with httpx.Client(timeout=30, follow_redirects=True) as browser:
        assert browser.get(link.url).status_code in (401, 403)
    stats = proxy.stats()
    assert stats.requests >= 4 and stats.responses.get("2xx", 0) >= 4
    assert sum(stats.refused.values()) >= 2


@pytest.fixture(params=SDKS)
def notebook(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Any]:
    """An in-process engine as a notebook opens one (`dxflow.Engine()`, or the async SDK's
    `AsyncEngine()` on a loop of its own): it owns its core, whose lifecycle runs the
    proxies' own listeners (the shared cores of the transport fixtures run none)."""
    monkeypatch.setenv("DXFLOW_HOME", str(tmp_path / "home"))
    if request.param == "sync":
        with Engine() as engine:
            yield engine
        return
    runner = Runner()
    engine = runner.run_on_loop(_async_engine)
    try:
        yield AsyncDriven(engine, runner)
    finally:
        runner.run_on_loop(engine.aclose)
        runner.close()


async def _async_engine() -> AsyncEngine:
    return AsyncEngine()


def test_a_port_of_its_own_serves_http_and_tcp(notebook: Any, target: str) -> None:
    web = notebook.proxies.create("own", target=target, port=0, auth="none")
    assert web.url == f"http://127.0.0.1:{web.info.port}/"
    assert _get(f"{web.url}a") == "hello from /a"
    raw = notebook.proxies.create("raw", target=target, protocol="tcp", port=0)
    assert raw.info.port is not None and raw.url == f"tcp://127.0.0.1:{raw.info.port}"
    assert _raw_get(raw.info.port, "/tcp").endswith(b"hello from /tcp")
    web.remove()
    raw.remove()


def _get(url: str) -> str:
    """The body at `url`, once the listener (started by the engine's lifecycle) answers."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return httpx.get(url, timeout=30).text
        except httpx.ConnectError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _raw_get(port: int, path: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.0 200"), answer[:200]
    return answer
