"""A proxy's unix socket target swapped for a link, over HTTP with a real PROXY key.

Found by the audit of issue 8 (G2): the target policy checked a socket's path when the
proxy was made, and every connect then went by that path, following links. A workflow
container with a bind of the socket's folder in storage could swap the socket (or the
folder) for a symlink to /var/run/docker.sock, and the PROXY key's proxy reached the
Docker API (root on the host). Each test here makes that swap, with a unix socket server
outside storage standing in for the Docker socket, and asserts it never gets a single
connection: the HTTP and WebSocket data planes answer 502, the TCP one closes, a health
check marks the target unhealthy, and a swap loop run while requests flow never gets
through either.
"""

from __future__ import annotations

import ctypes
import os
import platform
import socket
import socketserver
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest

from dxflow import Engine, Permission
from dxflow._core import EngineCore
from dxflow._core._proxies import _pool
from dxflow._keypairs import load_private_key
from dxflow._transports._http import HttpTransport

from ..conftest import KeyFactory
from ..integration.test_proxies_core import Running, wait_for

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux", reason="renameat2(RENAME_EXCHANGE) and /proc are Linux's"
)

WORKERS = 4
ROUNDS = 50  # 4 workers x 50 requests = 200 requests per swap kind, whatever the time
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: every answer closes its connection, so every request is a new connect
    # (a kept-alive connection to the inside socket would hide the connect under test).
    server: Server

    def do_GET(self) -> None:
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class Server(socketserver.ThreadingUnixStreamServer):
    """An HTTP server on a unix socket that answers its name and counts the connections
    it accepts (any connection at all, HTTP or not, is a reach)."""

    daemon_threads = True

    def __init__(self, path: Path, name: str) -> None:
        super().__init__(str(path), _Handler)
        self.name = name
        self.accepted = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    def get_request(self) -> Any:
        request = super().get_request()
        self.accepted += 1
        return request

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Place:
    """storage/app/app.sock answers "inside"; outside/app.sock (the Docker socket's
    stand-in, at the same name by another road) answers "outside". `decoy` is a symlink in
    storage to the outside socket, `decoy-dir` one to the outside folder."""

    def __init__(self, storage: Path, tmp: Path) -> None:
        self.folder = storage / "app"
        self.folder.mkdir(parents=True)
        (tmp / "outside").mkdir()
        self.socket = self.folder / "app.sock"
        self.inside = Server(self.socket, "inside")
        self.outside = Server(tmp / "outside" / "app.sock", "outside")
        self.decoy = self.folder / "decoy"
        self.decoy.symlink_to(tmp / "outside" / "app.sock")
        self.decoy_dir = storage / "decoy-dir"
        self.decoy_dir.symlink_to(tmp / "outside")
        assert _exchange(self.socket, self.decoy) and _exchange(self.socket, self.decoy)

    def pair(self, kind: str) -> tuple[Path, Path]:
        """The two names a swap exchanges: the socket and a link in its place, or the
        socket's folder and a link to the outside folder."""
        return (self.socket, self.decoy) if kind == "socket" else (self.folder, self.decoy_dir)

    def stop(self) -> None:
        self.inside.stop()
        self.outside.stop()


_libc = ctypes.CDLL(None, use_errno=True)


def _exchange(a: Path, b: Path) -> bool:
    """renameat2(RENAME_EXCHANGE): atomic, the name is always one or the other."""
    return bool(_libc.renameat2(-100, bytes(a), -100, bytes(b), 2) == 0)


@pytest.fixture
def place(core: EngineCore, tmp_path: Path) -> Iterator[Place]:
    made = Place(core.config.storage_root, tmp_path)
    yield made
    made.stop()


@pytest.fixture(autouse=True)
def no_ejection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request tries a connect: a target that failed three times in a row would be
    out of the pool for 10 s (503 without a connect), which would hide what is tested."""
    monkeypatch.setattr(_pool, "EJECT_AFTER", 1 << 30)


@pytest.fixture
def proxy_key(server_url: str, make_key: KeyFactory) -> Iterator[Engine]:
    """The attacker's side that asks for the proxy: a PROXY key over real HTTP."""
    engine = Engine(
        transport=HttpTransport(server_url, load_private_key(make_key(Permission.PROXY).private))
    )
    yield engine
    engine.close()


def _get(url: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(timeout=60) as client:
        return client.get(url, **kwargs)


@pytest.mark.parametrize("kind", ["socket", "folder"])
def test_a_swapped_socket_is_never_reached_over_http_or_websocket(
    proxy_key: Engine, place: Place, kind: str
) -> None:
    proxy = proxy_key.proxies.create("app", target=f"unix:{place.socket}", auth="none")
    assert proxy.url is not None
    reply = _get(proxy.url)
    assert (reply.status_code, reply.text) == (200, "inside")
    assert _exchange(*place.pair(kind))  # the container's move
    for _ in range(3):
        refused = _get(proxy.url)
        assert refused.status_code == 502, refused.text
        assert "symbolic link" in refused.text and "refused" in refused.text, refused.text
    upgrade = _get(f"{proxy.url}ws", headers=UPGRADE)
    assert upgrade.status_code == 502 and "symbolic link" in upgrade.text, upgrade.text
    assert place.outside.accepted == 0
    assert _exchange(*place.pair(kind))  # back: the proxy works again
    assert _get(proxy.url).text == "inside"
    assert place.outside.accepted == 0


class Swapper(threading.Thread):
    """Exchanges the two names as fast as it can until told to stop, ending as it began."""

    def __init__(self, a: Path, b: Path) -> None:
        super().__init__(daemon=True)
        self.a, self.b = a, b
        self.swaps = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            assert _exchange(self.a, self.b), os.strerror(ctypes.get_errno())
            self.swaps += 1
        if self.swaps % 2:
            _exchange(self.a, self.b)


@pytest.mark.parametrize("kind", ["socket", "folder"])
def test_a_swap_loop_while_requests_flow_never_reaches_outside(
    proxy_key: Engine, place: Place, kind: str
) -> None:
    proxy = proxy_key.proxies.create("app", target=f"unix:{place.socket}", auth="none")
    url = proxy.url
    assert url is not None
    statuses: Counter[int] = Counter()
    wrong: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client(timeout=60) as client:
            for _ in range(ROUNDS):
                reply = client.get(url)
                with lock:
                    statuses[reply.status_code] += 1
                    if reply.status_code == 200 and reply.text != "inside":
                        wrong.append(reply.text[:80])
                    elif reply.status_code not in (200, 502):
                        wrong.append(f"{reply.status_code} {reply.text[:200]}")

    swapper = Swapper(*place.pair(kind))
    swapper.start()
    try:
        threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        swapper.done.set()
        swapper.join(30)
    print(f"\n{kind}: {swapper.swaps} swaps, statuses {dict(statuses)}, "
          f"outside reached {place.outside.accepted} times")  # fmt: skip
    assert place.outside.accepted == 0
    assert wrong == []
    assert sum(statuses.values()) == WORKERS * ROUNDS and swapper.swaps > 0
    assert _get(url).text == "inside"  # the names back as they were: it works again


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    """A core with its lifecycle (TCP listeners and health checks run in it)."""
    engine = Running(tmp_path / "home")
    yield engine
    engine.close()


def test_the_tcp_data_plane_and_health_checks_refuse_the_swap(
    running: Running, tmp_path: Path
) -> None:
    place = Place(running.core.config.storage_root, tmp_path)
    try:
        key = running.key("proxier", Permission.PROXY)
        running.call("proxies.create", key, name="db", protocol="tcp", port=0,
                     targets=[f"unix:{place.socket}"])  # fmt: skip
        running.call("proxies.create", key, name="web", targets=[f"unix:{place.socket}"],
                     health={"path": "/", "interval": 0.2, "unhealthy": 1})  # fmt: skip
        port = running.serving("db").port

        def through_tcp() -> bytes:
            """What comes back through the TCP proxy (b"": closed or reset, no target)."""
            with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
                try:
                    conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
                    return b"".join(iter(lambda: conn.recv(65536), b""))
                except ConnectionResetError:
                    return b""

        def health() -> tuple[str, str | None]:
            (target,) = running.call("proxies.get", name="web").pool
            return target.health, target.error

        assert through_tcp().endswith(b"inside")
        wait_for(lambda: health()[0] == "healthy", "the health check to pass")
        assert _exchange(place.socket, place.decoy)
        assert through_tcp() == b""  # no target would take it: the proxy drops it
        _, error = wait_for(lambda: health()[0] == "unhealthy" and health(), "unhealthy")
        assert error is not None and "symbolic link" in error, error
        assert place.outside.accepted == 0
    finally:
        place.stop()
