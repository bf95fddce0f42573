"""Proxies against real parts: a web app in a workflow container, Redis, a pool losing a
target under concurrent load, ip_hash and least_conn between real targets, access rules
from two client addresses, TLS checked by curl, an engine restart, a 1 GiB download, a
target that hangs and Jupyter's kernels under the prefix, all through a booted engine
(`dxflow boot up`).

Nothing here asserts how fast anything is (only that a timeout was waited out):
conditions are polled with generous deadlines.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import dxflow

from ._proxy_servers import (
    RssPeak,
    app_process,
    free_port,
    local_bind_ok,
    python_image,
    redis_server,
    wait_for,
)
from .conftest import Booted, boot
from .conftest import dxflow as run

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

GIB = 1 << 30


@dataclass
class Node:
    """A booted engine and a MASTER SDK client of it."""

    booted: Booted
    engine: dxflow.Engine

    @property
    def home(self) -> Path:
        return self.booted.home


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    booted = boot(tmp_path_factory.mktemp("proxies") / "home")
    engine = dxflow.Engine(booted.url, key=booted.master_key)
    try:
        yield Node(booted, engine)
    finally:
        engine.close()
        run("boot", "down", "--home", booted.home, check=False)


@pytest.fixture
def app() -> Iterator[int]:
    """The stdlib app on a loopback port, named "host"."""
    port = free_port()
    with app_process(port, "host"):
        yield port


def client(source: str = "127.0.0.1", **kwargs: Any) -> httpx.Client:
    """An HTTP client whose connections come from `source` (any 127/8 address)."""
    transport = httpx.HTTPTransport(local_address=source)
    kwargs.setdefault("timeout", 30)
    return httpx.Client(transport=transport, trust_env=False, **kwargs)


def page(proxy: Any, path: str = "") -> str:
    """`path` under the proxy's URL (its own port, or `/p/{name}/`)."""
    return str(proxy.url).rstrip("/") + "/" + path.lstrip("/")


def error_code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


# -- a) a web app in a workflow container ---------------------------------------------------


@pytest.mark.docker
def test_a_web_app_in_a_workflow_container_under_the_prefix(
    node: Node, project_name: str, docker_client: Any
) -> None:
    image = python_image()
    compose = {"services": {"web": {"image": image, "stop_grace_period": "1s"}}}
    wf = node.engine.workflows.create(project_name, compose)
    wf.up(timeout=120)
    name = f"app-{project_name}"[:63]
    proxy = node.engine.proxies.create(
        name, target={"workflow": project_name, "service": "web", "port": 8080}, auth="none"
    )
    assert proxy.url == f"{node.booted.url}/p/{name}/"
    with client() as http:
        wait_for(lambda: http.get(page(proxy, "health")).status_code == 200, "the app answers")

        moved = http.get(page(proxy, "old"))  # the app redirects to the absolute path /new
        assert moved.status_code == 302
        assert httpx.URL(moved.headers["location"]).path == f"/p/{name}/new"
        followed = http.get(page(proxy, "old"), follow_redirects=True)
        assert followed.status_code == 200 and followed.text == "the new page of container"

        cookie = http.get(page(proxy, "cookie")).headers["set-cookie"]
        assert re.search(rf"(?i)\bpath=/p/{name}/?(;|$)", cookie), cookie

        seen = http.get(page(proxy, "headers?x=1")).json()
        assert seen[":path"] == "/headers?x=1"  # the prefix stripped, the query kept
        assert seen["x-forwarded-for"] == "127.0.0.1"
        assert seen["x-forwarded-proto"] == "http"
        assert seen["x-forwarded-host"] == httpx.URL(node.booted.url).netloc.decode()
        assert seen["x-forwarded-prefix"].rstrip("/") == f"/p/{name}"

        # The app builds its own absolute URL from the Host it was sent, which is the
        # container's address (not the engine's): that URL comes back under the prefix.
        assert seen["host"] == proxy.reload().pool[0].address
        away = http.get(page(proxy, "away"))
        assert away.status_code == 302
        assert away.headers["location"] == f"{node.booted.url}/p/{name}/new"
        followed = http.get(page(proxy, "away"), follow_redirects=True)
        assert followed.status_code == 200 and followed.text == "the new page of container"
        foreign = http.get(page(proxy, "elsewhere"))  # another site's URL is left alone
        assert foreign.headers["location"] == "http://elsewhere.test/new"

    ws_url = page(proxy, "ws").replace("http://", "ws://", 1)
    _echo(ws_url)

    # the container is recreated (a new address): the proxy follows it
    wf.down()
    wf.up(timeout=120)
    with client() as http:
        wait_for(lambda: http.get(page(proxy, "name")).text == "container", "the app again")
    _echo(ws_url)
    proxy.remove()
    wf.down()


def _echo(url: str) -> None:
    from websockets.sync.client import connect

    with connect(url, open_timeout=30, proxy=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=30) == "hello"
        blob = bytes(range(256)) * 400  # 100 KiB: a 64-bit length frame
        ws.send(blob)
        assert ws.recv(timeout=30) == blob


# -- b) Redis behind a TCP proxy ------------------------------------------------------------


def test_redis_through_a_tcp_proxy(node: Node) -> None:
    import redis

    with redis_server() as port:
        proxy = node.engine.proxies.create(
            "redis", target=f"127.0.0.1:{port}", protocol="tcp", port=0, auth="none"
        )
        own = proxy.info.port
        assert own and own != port
        r = redis.Redis(host="127.0.0.1", port=own, socket_timeout=30)
        try:
            assert r.set("greeting", "hello") is True
            assert r.get("greeting") == b"hello"
            blob = bytes(range(256)) * 4096  # 1 MiB both ways
            r.set("blob", blob)
            assert r.get("blob") == blob
            pipe = r.pipeline()
            for _ in range(1000):
                pipe.incr("counter")
            assert pipe.execute()[-1] == 1000
        finally:
            r.close()
        direct = redis.Redis(host="127.0.0.1", port=port)
        assert direct.get("counter") == b"1000"  # it was the real server
        direct.close()

        bench = subprocess.run(
            ["redis-benchmark", "-h", "127.0.0.1", "-p", str(own), "-t", "get,set", "-q",
             "-n", "2000"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        output = bench.stdout.replace("\r", "\n")
        assert bench.returncode == 0, bench.stderr
        assert re.search(r"^SET: [\d.]+ requests per second", output, re.MULTILINE), output
        assert re.search(r"^GET: [\d.]+ requests per second", output, re.MULTILINE), output
        assert "error" not in (output + bench.stderr).lower()
        stats = proxy.stats()
        assert stats.requests >= 2 and stats.bytes_in > len(blob)
        proxy.remove()


# -- c) a pool losing a target -------------------------------------------------------------


CLIENTS = 8
"""Clients GETting at once through the pool (each its own connections)."""


def test_a_pool_with_one_target_killed_mid_load(node: Node) -> None:
    interval = 0.5
    ports = [free_port() for _ in range(3)]
    with (
        app_process(ports[0], "t0"),
        app_process(ports[1], "t1"),
        app_process(ports[2], "t2") as doomed,
    ):
        proxy = node.engine.proxies.create(
            "pool", target=[f"127.0.0.1:{p}" for p in ports], auth="none", retries=2,
            # a check's timeout long enough that the two live targets, answering all the
            # load, are never taken for dead on a busy machine (the killed one refuses)
            health={"path": "/health", "interval": interval, "timeout": 10},
        )  # fmt: skip
        url = page(proxy, "name")
        with client() as http:
            seen = set()
            for _ in range(300):
                answer = http.get(url)
                assert answer.status_code == 200, answer.text
                seen.add(answer.text)
                if seen == {"t0", "t1", "t2"}:
                    break
            assert seen == {"t0", "t1", "t2"}  # round robin reaches all three

        # (client, started, status, text): list.append is atomic, so the clients share it
        results: list[tuple[int, float, int, str]] = []
        stop = threading.Event()

        def load(number: int) -> None:
            with client() as http:
                while not stop.is_set():
                    started = time.monotonic()
                    try:
                        answer = http.get(url)
                        results.append((number, started, answer.status_code, answer.text))
                    except httpx.HTTPError as exc:
                        results.append((number, started, 0, repr(exc)))

        def answered_since(since: float) -> set[int]:
            return {r[0] for r in results if r[1] >= since and r[2] == 200}

        def unhealthy() -> bool:
            return any(s.target.endswith(f":{ports[2]}") and s.health == "unhealthy"
                       for s in proxy.reload().pool)  # fmt: skip

        clients = [threading.Thread(target=load, args=(n,)) for n in range(CLIENTS)]
        began = time.monotonic()
        for thread in clients:
            thread.start()
        try:
            # every client is in the middle of its load when the target dies
            wait_for(lambda: answered_since(began) == set(range(CLIENTS)), "the load")
            doomed.kill()
            killed_at = time.monotonic()
            wait_for(unhealthy, "the killed target marked unhealthy")
            ejected_at = time.monotonic()
            # after ejection: each client gets many more answers, all from the others
            wait_for(
                lambda: (
                    sum(1 for r in results if r[1] >= ejected_at) >= 25 * CLIENTS
                    and answered_since(ejected_at) == set(range(CLIENTS))
                ),
                "the load after the ejection",
            )
        finally:
            stop.set()
            for thread in clients:
                thread.join(60)
        assert not any(thread.is_alive() for thread in clients)

        settled = killed_at + 2 * interval
        late = [r for r in results if r[1] >= settled]
        failed = [r for r in late if r[2] != 200]
        assert not failed, f"{len(failed)} failed GETs after two health intervals: {failed[:5]}"
        assert {text for *_, text in late} <= {"t0", "t1"}
        assert {r[0] for r in late} == set(range(CLIENTS))  # all of them, all along
        early_failures = [r for r in results if r[1] < settled and r[2] != 200]
        print(f"{len(results)} GETs from {CLIENTS} clients; failed within two health "
              f"intervals of the kill: {len(early_failures)}")  # fmt: skip
        by_target = {t.target: t for t in proxy.stats().targets}
        assert by_target[f"127.0.0.1:{ports[2]}"].health == "unhealthy"
        proxy.remove()


# -- c') balancing through the data plane -------------------------------------------------


def _name(http: httpx.Client, url: str) -> str:
    """Which target answered a GET of /name."""
    answer = http.get(url)
    assert answer.status_code == 200, answer.text
    return answer.text


def test_ip_hash_keeps_each_client_address_on_its_target(node: Node) -> None:
    if not local_bind_ok("127.0.0.2"):
        pytest.fail("a client socket cannot bind 127.0.0.2 (all of 127/8 is loopback on Linux)")
    ports = {f"t{i}": free_port() for i in range(3)}
    with contextlib.ExitStack() as stack:
        apps = {name: stack.enter_context(app_process(port, name)) for name, port in ports.items()}
        proxy = node.engine.proxies.create(
            "sticky", target=[f"127.0.0.1:{port}" for port in ports.values()], auth="none",
            balance="ip_hash", retries=2, health={"path": "/health", "interval": 0.5,
                                                  "timeout": 10},
        )  # fmt: skip
        url = page(proxy, "name")
        # 16 client addresses over 3 targets: that all land on one is a 3**-15 chance
        addresses = [f"127.0.0.{n}" for n in range(1, 17)]

        def reached(address: str) -> set[str]:
            """The targets `address` reached: on one kept-alive connection, then on new
            connections (other source ports): the address sticks, not the connection."""
            with client(address) as http:
                got = {_name(http, url) for _ in range(3)}
            for _ in range(3):
                with client(address) as http:
                    got.add(_name(http, url))
            return got

        first: dict[str, str] = {}
        for address in addresses:
            got = reached(address)
            assert len(got) == 1, f"{address} reached {sorted(got)}"
            first[address] = got.pop()
        assert len(set(first.values())) >= 2, first  # the addresses spread over the pool

        # The target of 127.0.0.1 dies: its clients move (and stick again), no other does.
        gone = first["127.0.0.1"]
        apps[gone].kill()
        label = f"127.0.0.1:{ports[gone]}"

        def out() -> bool:
            return any(s.target == label and s.health == "unhealthy" for s in proxy.reload().pool)

        wait_for(out, "the target marked unhealthy")
        for address in addresses:
            got = reached(address)
            assert len(got) == 1, f"{address} reached {sorted(got)} after {gone} left"
            if first[address] == gone:
                assert got != {gone}
            else:
                assert got == {first[address]}, f"{address} moved though its target stayed"
        proxy.remove()


def test_least_conn_sends_new_requests_past_a_target_holding_long_ones(node: Node) -> None:
    ports = {"t0": free_port(), "t1": free_port()}
    labels = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    held_answers: list[httpx.Response] = []
    with contextlib.ExitStack() as stack:
        for name, port in ports.items():
            stack.enter_context(app_process(port, name))
        proxy = node.engine.proxies.create(
            "fewest", target=list(labels.values()), auth="none", balance="least_conn",
            timeout=600,  # the held requests wait as long as the test needs
        )  # fmt: skip

        def held() -> dict[str, int]:
            """Requests each app holds now (asked of the app itself)."""
            return {name: int(httpx.get(f"http://127.0.0.1:{port}/held", trust_env=False,
                                        timeout=60).text)
                    for name, port in ports.items()}  # fmt: skip

        def release(name: str) -> None:
            httpx.get(f"http://127.0.0.1:{ports[name]}/release", trust_env=False, timeout=60)

        def open_connections() -> dict[str, int]:
            by_label = {t.target: t.open_connections for t in proxy.stats().targets}
            return {name: by_label[label] for name, label in labels.items()}

        def hold() -> None:
            with client(timeout=600) as http:
                held_answers.append(http.get(page(proxy, "hold")))

        holders = [threading.Thread(target=hold) for _ in range(4)]
        for thread in holders:
            thread.start()
        try:
            wait_for(lambda: sum(held().values()) == 4, "four long requests held")
            counts = held()
            busy = max(counts, key=lambda name: counts[name])
            idle = "t1" if busy == "t0" else "t0"
            assert counts[busy] >= 2  # four over two targets
            release(idle)  # its requests end; the busy one keeps holding its own
            wait_for(lambda: open_connections() == {busy: counts[busy], idle: 0},
                     "the proxy's counts of open requests")  # fmt: skip

            with client() as http:
                new = [_name(http, page(proxy, "name")) for _ in range(20)]
                assert new == [idle] * 20, f"least_conn sent {new.count(busy)} to {busy}"
                # The same with round_robin (the held requests and the counts stay):
                # half go to the busy target, so it is least_conn that kept them off it.
                proxy.update(balance="round_robin")
                rotated = [_name(http, page(proxy, "name")) for _ in range(20)]
                assert rotated.count(busy) == 10, rotated
        finally:
            for name in ports:
                with contextlib.suppress(httpx.HTTPError):
                    release(name)
            for thread in holders:
                thread.join(120)
        assert not any(thread.is_alive() for thread in holders)
        assert [a.status_code for a in held_answers] == [200] * 4
        assert sorted(a.text for a in held_answers) == sorted(
            name for name, n in counts.items() for _ in range(n)
        )  # each held request was answered by the target that held it
        proxy.remove()


# -- d) access rules, auth modes, TLS -------------------------------------------------------


def test_allow_and_deny_by_client_address(node: Node, app: int) -> None:
    if not local_bind_ok("127.0.0.2"):
        pytest.fail("a client socket cannot bind 127.0.0.2 (all of 127/8 is loopback on Linux)")
    target = f"127.0.0.1:{app}"
    only_one = node.engine.proxies.create("allow", target=target, auth="none",
                                          allow=["127.0.0.1/32"])  # fmt: skip
    deny_wins = node.engine.proxies.create("deny", target=target, auth="none",
                                           allow=["127.0.0.0/8"], deny=["127.0.0.2"])  # fmt: skip
    for proxy in (only_one, deny_wins):
        with client("127.0.0.1") as near, client("127.0.0.2") as other:
            assert near.get(page(proxy, "name")).text == "host"
            refused = other.get(page(proxy, "name"))
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["message"]
    stats = deny_wins.stats()
    assert stats.refused.get("denied", 0) >= 1, stats.refused
    only_one.remove()
    deny_wins.remove()


def test_rate_limit_answers_429_with_retry_after_per_client(node: Node, app: int) -> None:
    proxy = node.engine.proxies.create(
        "rated", target=f"127.0.0.1:{app}", auth="none", rate="1/min", burst=2
    )
    with client("127.0.0.1") as first, client("127.0.0.2") as second:
        assert [first.get(page(proxy, "name")).status_code for _ in range(2)] == [200, 200]
        limited = first.get(page(proxy, "name"))
        assert limited.status_code == 429, limited.text
        assert int(limited.headers["retry-after"]) >= 1
        assert error_code(limited)
        # the bucket is per client address: another client still has its own
        assert second.get(page(proxy, "name")).status_code == 200
    assert proxy.stats().refused.get("rate", 0) >= 1
    proxy.remove()


def test_auth_token_none_and_what_reaches_the_target(node: Node, app: int) -> None:
    guarded = node.engine.proxies.create("guarded", target=f"127.0.0.1:{app}")  # token default
    public = node.engine.proxies.create("public", target=f"127.0.0.1:{app}", auth="none")
    token = node.engine.token().token
    with client() as http:
        refused = http.get(page(guarded, "name"))
        assert refused.status_code == 401, refused.text
        assert (
            http.get(page(guarded, "name"), headers={"Authorization": "Bearer nope"}).status_code
            == 401
        )
        seen = http.get(page(guarded, "headers"), headers={"Authorization": f"Bearer {token}"})
        assert seen.status_code == 200
        assert "authorization" not in seen.json()  # the dxflow token is not forwarded
        by_cookie = http.get(
            page(guarded, "headers"), headers={"Cookie": f"dxflow_token={token}; theme=dark"}
        )
        assert by_cookie.status_code == 200
        assert by_cookie.json().get("cookie") == "theme=dark"  # the app's own cookie only
        assert http.get(page(public, "name")).text == "host"  # auth="none": no credentials
    guarded.remove()
    public.remove()


def test_auth_link_sets_a_cookie_and_unlink_revokes_it(node: Node, app: int) -> None:
    proxy = node.engine.proxies.create("linked", target=f"127.0.0.1:{app}", auth="link")
    link = proxy.link(expires="1h")
    assert link.url and "dxflow_link=" in link.url
    with client() as browser, client() as stranger:
        opened = browser.get(link.url, follow_redirects=True)
        assert opened.status_code == 200, opened.text
        assert browser.cookies.get(f"dxflow_link_{proxy.name}")
        seen = browser.get(page(proxy, "headers"))  # no query: the cookie carries it
        assert seen.status_code == 200
        assert "dxflow_link" not in seen.json()[":path"]
        assert "dxflow_link" not in seen.json().get("cookie", "")
        assert stranger.get(page(proxy, "name")).status_code == 401
        assert [x.id for x in proxy.links()] == [link.id]
        proxy.unlink(link.id)
        revoked = browser.get(page(proxy, "name"))
        assert revoked.status_code in (401, 403), revoked.text
    proxy.remove()


def test_tls_on_a_port_of_its_own_checked_by_curl(node: Node, app: int) -> None:
    proxy = node.engine.proxies.create(
        "secure", target=f"127.0.0.1:{app}", auth="none", port=0, tls=True
    )
    assert proxy.url and proxy.url.startswith("https://127.0.0.1:")
    cert = node.home / "tls" / "cert.pem"
    assert cert.is_file()
    trusted = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", "--cacert", str(cert), page(proxy, "name")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout == "host"
    untrusted = subprocess.run(
        ["curl", "-sS", "--noproxy", "*", page(proxy, "name")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert untrusted.returncode == 60, untrusted  # the certificate is not trusted by default
    proxy.remove()


# -- e) an engine restart ------------------------------------------------------------------


def test_proxies_survive_an_engine_restart(tmp_path: Path, app: int) -> None:
    home = tmp_path / "home"
    first = boot(home)
    try:
        with dxflow.Engine(first.url, key=first.master_key) as engine:
            web = engine.proxies.create("web", target=f"127.0.0.1:{app}", auth="none")
            raw = engine.proxies.create(
                "raw", target=f"127.0.0.1:{app}", protocol="tcp", port=0, auth="none"
            )
            own = raw.info.port
            assert httpx.get(page(web, "name"), trust_env=False).text == "host"
        run("boot", "down", "--home", home)
        second = boot(home)
        with dxflow.Engine(second.url, key=second.master_key) as engine:
            assert sorted(p.name for p in engine.proxies.list()) == ["raw", "web"]
            web = engine.proxies.get("web")
            assert web.info.state == "serving"
            assert web.url == f"{second.url}/p/web/"
            assert httpx.get(page(web, "name"), trust_env=False).text == "host"
            raw = engine.proxies.get("raw")
            assert raw.info.port == own  # the port picked at creation is kept
            # its listener is bound by the lifecycle, which starts just after the boot
            own_url = f"http://127.0.0.1:{own}/name"
            wait_for(lambda: httpx.get(own_url, trust_env=False).text == "host", "the port")
    finally:
        run("boot", "down", "--home", home, check=False)


# -- f) a 1 GiB download with bounded memory ------------------------------------------------


def test_a_1_gib_download_keeps_the_engine_memory_bounded(node: Node, app: int) -> None:
    proxy = node.engine.proxies.create("big", target=f"127.0.0.1:{app}", auth="none")
    curl = shutil.which("curl")
    assert curl, "curl is needed"
    with RssPeak(node.booted.pid) as rss:
        done = subprocess.run(
            [curl, "-sS", "--noproxy", "*", "-o", "/dev/null",
             "-w", "%{http_code} %{size_download}", page(proxy, f"bytes/{GIB}")],
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["200", str(GIB)]
    assert rss.growth_mib < 32, f"the engine's RSS grew by {rss.growth_mib:.1f} MiB"
    stats = proxy.stats()
    assert stats.bytes_out >= GIB
    print(json.dumps({"rss_growth_mib": round(rss.growth_mib, 1)}))
    proxy.remove()


# -- g) a target that hangs -----------------------------------------------------------------


class Hanging:
    """A real TCP server that takes connections, reads what they send and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self.received = bytearray()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.held.append(conn)  # kept open, never answered
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := conn.recv(65536):
                self.received += data

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()
        self.thread.join(10)


def test_a_hanging_target_is_a_504_after_the_timeout_set_through_the_api(node: Node) -> None:
    hanging = Hanging()
    target = f"127.0.0.1:{hanging.port}"
    try:
        proxy = node.engine.proxies.create("stuck", target=target, auth="none", timeout=1)
        assert proxy.info.timeout == 1
        with client() as http:
            began = time.monotonic()
            reply = http.get(page(proxy, "anything"))
            waited = time.monotonic() - began
            assert reply.status_code == 504
            assert error_code(reply) == "timed_out"
            assert reply.json()["error"]["message"] == (
                f"proxy stuck: target {target}: no answer within 1 s"
            )
            assert waited >= 1  # it waited for the target that long, not less
            assert b"GET /anything HTTP/1.1" in hanging.received  # the request reached it

            proxy.update(timeout=2.5)  # an update's timeout applies to the next request
            reply = http.get(page(proxy, "again"))
            assert reply.status_code == 504
            assert reply.json()["error"]["message"].endswith("no answer within 2.5 s")
        stats = proxy.stats()
        assert stats.responses.get("5xx") == 2
        assert stats.targets[0].failures == 2 and stats.targets[0].responses == {}
        proxy.remove()
    finally:
        hanging.close()


# -- h) Jupyter under the prefix ------------------------------------------------------------


@contextlib.contextmanager
def jupyter_server(port: int, token: str, base_url: str, root: Path) -> Iterator[Path]:
    """jupyter-server (a dev dependency) on 127.0.0.1:port under `base_url`; its log."""
    for folder in ("runtime", "config", "ipython", "notebooks"):
        (root / folder).mkdir()
    log = root / "jupyter.log"
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "config"),
        "IPYTHONDIR": str(root / "ipython"),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_server", "--no-browser", "--allow-root",
             "--ip", "127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
             f"--ServerApp.base_url={base_url}", f"--ServerApp.root_dir={root / 'notebooks'}"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
    try:
        status = f"http://127.0.0.1:{port}{base_url}api/status?token={token}"
        wait_for(lambda: process.poll() is None and httpx.get(status, trust_env=False).is_success,
                 f"jupyter-server listening (log: {log})", timeout=180)  # fmt: skip
        yield log
    finally:
        process.terminate()  # jupyter shuts its kernels down on SIGTERM
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def test_jupyter_kernels_and_their_websocket_under_the_prefix(node: Node, tmp_path: Path) -> None:
    """The guide's notebook-server setup under the engine's listener, used as a browser
    uses it: jupyter-server with `base_url=/p/lab/` behind the target
    `http://127.0.0.1:PORT/p/lab`. One logs in on Jupyter's page through the proxy (its
    cookies come back with paths under the prefix), makes a kernel through its REST API
    (cookie and XSRF header, as JupyterLab does), runs `1+1` over the kernel's channels
    WebSocket through the proxy with the engine's URL as Origin (Jupyter refuses another
    site's: the proxy maps only a same-origin Origin onto the target's own, so Jupyter
    needs no allow_origin), and deletes the kernel. The proxy keeps its default auth
    (the dxflow token as a bearer, never seen by Jupyter)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    port, lab = free_port(), secrets.token_hex(16)
    origin = node.booted.url  # a browser on the engine's URL sends this Origin
    with jupyter_server(port, lab, "/p/lab/", tmp_path):
        # a kernel's start is answered once it runs: slow on a loaded machine
        proxy = node.engine.proxies.create(
            "lab", target=f"http://127.0.0.1:{port}/p/lab", timeout=300
        )
        assert proxy.url == f"{node.booted.url}/p/lab/"
        bearer = {"Authorization": f"Bearer {node.engine.token().token}"}
        with client(headers=bearer, timeout=300) as http:
            login = http.get(page(proxy, "login"))
            assert login.status_code == 200, login.text
            xsrf = http.cookies["_xsrf"]
            logged_in = http.post(page(proxy, "login"), data={"password": lab, "_xsrf": xsrf})
            assert logged_in.status_code == 302, logged_in.text
            assert logged_in.headers["location"].startswith("/p/lab/")
            for cookie in logged_in.headers.get_list("set-cookie"):
                assert re.search(r"(?i);\s*path=/p/lab/(;|$)", cookie), cookie
            assert any(c.name.startswith("username-") for c in http.cookies.jar)

            api = {"X-XSRFToken": xsrf}
            assert http.get(page(proxy, "api/kernels"), headers=api).json() == []
            made = http.post(page(proxy, "api/kernels"), headers=api, json={"name": "python3"})
            assert made.status_code == 201, made.text
            kernel = made.json()["id"]
            # Jupyter's own absolute path for the kernel is the one clients use
            assert made.headers["location"] == f"/p/lab/api/kernels/{kernel}"

            channels = page(proxy, f"api/kernels/{kernel}/channels").replace("http", "ws", 1)
            session = uuid.uuid4().hex
            browser = {
                **bearer,
                "Cookie": "; ".join(f"{c.name}={c.value}" for c in http.cookies.jar),
            }
            with pytest.raises(InvalidStatus) as foreign:
                connect(f"{channels}?session_id={session}", origin="http://elsewhere.test",
                        proxy=None, additional_headers=browser, open_timeout=300)  # fmt: skip
            refusal = foreign.value.response
            assert refusal.status_code == 403
            assert b"refused the upgrade (403)" in refusal.body  # Jupyter's no, not the proxy's
            with connect(
                f"{channels}?session_id={session}", origin=origin, proxy=None,
                additional_headers=browser, open_timeout=300,
            ) as ws:  # fmt: skip
                result, reply = _execute(ws, "1+1", session)
            assert result["data"]["text/plain"] == "2", result
            assert reply["status"] == "ok", reply

            gone = http.delete(page(proxy, f"api/kernels/{kernel}"), headers=api)
            assert gone.status_code == 204, gone.text
            left = http.get(page(proxy, "api/kernels"), headers=api).json()
            assert left == [], left
        assert proxy.stats().responses.get("1xx", 0) >= 1  # the upgrade went through it
        proxy.remove()


def _execute(ws: Any, code: str, session: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run `code` on a kernel's channels WebSocket (Jupyter's JSON messages): the
    content of its execute_result and of its execute_reply."""
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": session, "version": "5.3",
                   "date": datetime.now(UTC).isoformat()},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }))  # fmt: skip
    result: dict[str, Any] | None = None
    reply: dict[str, Any] | None = None
    while result is None or reply is None:
        message = json.loads(ws.recv(timeout=300))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue  # the kernel's status and its other replies
        if message["msg_type"] == "execute_result":
            result = message["content"]
        elif message["msg_type"] == "execute_reply":
            reply = message["content"]
        elif message["msg_type"] == "error":
            raise AssertionError(f"{code!r} failed in the kernel: {message['content']}")
    return result, reply
