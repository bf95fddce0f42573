"""The proxies' control plane and TCP data plane with real parts: a TCP proxy in front of
a real Redis server (Debian's redis-server on loopback) driven by redis-py, TLS, pools,
access rules, restarts of the engine, bad input that changes nothing, and keys that
cannot see or reach what is not theirs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

import dxflow
from dxflow import Permission
from dxflow._config import load_config
from dxflow._core import Context, EngineCore
from dxflow._exceptions import ApiError, Conflict, InvalidRequest, NotFound, PermissionDenied
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._operations import OPERATIONS

from .conftest import boot
from .conftest import dxflow as run_cli

WAIT = 30.0
"""Seconds a condition may take on a loaded machine."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = condition()
        except (OSError, redis.RedisError):
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def redis_port() -> Iterator[int]:
    """A real redis-server on a free loopback port, no persistence."""
    server = shutil.which("redis-server")
    assert server, "redis-server is needed (apt-get install -y redis-server)"
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: redis.Redis(port=port).ping(), "redis-server")
        yield port
    finally:
        process.terminate()
        process.wait(10)


class Running:
    """An EngineCore whose lifecycle runs on a loop thread of its own (as a server's
    does), called from the test's thread as a given identity."""

    def __init__(self, home: Path, uvloop: bool = False) -> None:
        self.core = EngineCore(load_config(home))
        if uvloop:  # what a server runs on when uvloop is installed (uvicorn's "auto")
            import uvloop as uv

            self.loop = uv.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        self.core.lifecycle.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(WAIT)

    def call(self, op: str, ctx: Context | None = None, **payload: Any) -> Any:
        ctx = ctx or self.core.local_context()
        return self.run(self.core.dispatcher.call(ctx, OPERATIONS[op], payload))

    def error(self, op: str, ctx: Context | None = None, **payload: Any) -> ApiError:
        with pytest.raises(ApiError) as caught:
            self.call(op, ctx, **payload)
        return caught.value

    def key(self, name: str, permissions: Permission) -> Context:
        pair = generate_key_pair(self.core.config.home.root / f"{name}.pem", "ed25519")
        private = load_private_key(pair.private)
        self.core.keys.add(name, private.public, permissions)
        return self.core.local_context(private)

    def serving(self, name: str) -> Any:
        """The proxy's info once its listener serves (its socket listens from the create
        on: a connection made before waits in the backlog)."""
        wait_for(lambda: self.core.proxies._live[name].serving, f"proxy {name} to serve")
        return self.call("proxies.get", name=name)

    def close(self) -> None:
        self.run(self.core.lifecycle.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.core.close()
        self.loop.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Running]:
    running = Running(tmp_path / "home")
    yield running
    running.close()


def rows(core: EngineCore) -> list[str]:
    return [row["name"] for row in core.state.query("SELECT name FROM proxies")]


# -- Redis through a TCP proxy ------------------------------------------------------------


def test_redis_through_a_tcp_proxy(engine: Running, redis_port: int) -> None:
    engine.call("proxies.create", name="db", targets=[f"127.0.0.1:{redis_port}"],
                protocol="tcp", port=0)  # fmt: skip
    info = engine.serving("db")
    assert info.url == f"tcp://127.0.0.1:{info.port}" and info.auth == "none"
    client = redis.Redis(port=info.port, socket_timeout=WAIT)
    assert client.set("k", "v") and client.get("k") == b"v"
    pipe = client.pipeline(transaction=False)
    for i in range(2000):
        pipe.set(f"key:{i}", i)
    assert all(pipe.execute())
    assert client.get("key:1999") == b"1999"
    big = os.urandom(8 << 20)  # bigger than every buffer on the way: backpressure
    client.set("big", big)
    assert client.get("big") == big

    def worker(n: int) -> bool:
        own = redis.Redis(port=info.port, socket_timeout=WAIT)
        try:
            return all(own.incr(f"counter:{n}") == i + 1 for i in range(100))
        finally:
            own.close()

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(worker, range(8)))
    client.close()

    stats = wait_for(
        lambda: (s := engine.call("proxies.stats", name="db")).open_connections == 0 and s,
        "the connections to close",
    )
    assert stats.requests == 9
    assert stats.bytes_in > 8 << 20 and stats.bytes_out > 8 << 20
    (target,) = stats.targets
    assert target.requests == 9 and target.failures == 0 and target.health == "healthy"
    assert target.bytes_in == stats.bytes_in and target.bytes_out == stats.bytes_out


def test_redis_through_a_tcp_proxy_on_uvloop(tmp_path: Path, redis_port: int) -> None:
    engine = Running(tmp_path / "home", uvloop=True)
    try:
        engine.call("proxies.create", name="db", targets=[f"127.0.0.1:{redis_port}"],
                    protocol="tcp", port=0, tls=True)  # fmt: skip
        info = engine.serving("db")
        ca = engine.core.config.home.tls_dir / "cert.pem"
        for _ in range(3):  # the first bytes come before the target is joined: kept
            client = redis.Redis(port=info.port, ssl=True, ssl_ca_certs=str(ca),
                                 socket_timeout=WAIT)  # fmt: skip
            big = os.urandom(4 << 20)
            assert client.set("big", big) and client.get("big") == big
            client.close()
    finally:
        engine.close()


def test_a_pool_skips_a_target_that_refuses(engine: Running, redis_port: int) -> None:
    dead = free_port()
    engine.call("proxies.create", name="db", protocol="tcp", port=0,
                targets=[f"127.0.0.1:{dead}", f"127.0.0.1:{redis_port}"])  # fmt: skip
    info = engine.serving("db")
    for _ in range(6):  # each connection: the dead target is tried, then the next
        client = redis.Redis(port=info.port, socket_timeout=WAIT)
        assert client.ping()
        client.close()
    stats = engine.call("proxies.stats", name="db")
    by_target = {t.target: t for t in stats.targets}
    assert by_target[f"127.0.0.1:{dead}"].health == "unhealthy"  # ejected after 3
    assert by_target[f"127.0.0.1:{dead}"].failures == 3
    assert by_target[f"127.0.0.1:{redis_port}"].requests == 6
    pool = {s.target: s for s in engine.call("proxies.get", name="db").pool}
    assert "refused" in (pool[f"127.0.0.1:{dead}"].error or "")


def test_no_target_left_closes_the_connection(engine: Running) -> None:
    engine.call("proxies.create", name="db", protocol="tcp", port=0,
                targets=[f"127.0.0.1:{free_port()}"])  # fmt: skip
    info = engine.serving("db")
    with socket.create_connection(("127.0.0.1", info.port), timeout=WAIT) as sock:
        assert sock.recv(1) == b""  # closed: no target took it
    stats = wait_for(lambda: (s := engine.call("proxies.stats", name="db")).refused and s,
                     "the refusal to count")  # fmt: skip
    assert stats.refused == {"unavailable": 1} and stats.open_connections == 0


def test_deny_closes_at_once_and_is_audited(engine: Running, redis_port: int) -> None:
    engine.call("proxies.create", name="db", protocol="tcp", port=0,
                targets=[f"127.0.0.1:{redis_port}"], deny=["127.0.0.0/8"])  # fmt: skip
    info = engine.serving("db")
    for _ in range(5):
        assert _shut(info.port)
    stats = engine.call("proxies.stats", name="db")
    assert stats.refused == {"denied": 5} and stats.requests == 0
    records = engine.call("audit.list", operation="proxies.access").records
    assert len(records) == 1 and records[0].outcome == "refused:denied"
    engine.call("proxies.update", name="db", deny=[], allow=["127.0.0.1"])
    assert redis.Redis(port=info.port, socket_timeout=WAIT).ping()  # the update: at once


def test_connection_cap(engine: Running, redis_port: int) -> None:
    engine.call("proxies.create", name="db", protocol="tcp", port=0,
                targets=[f"127.0.0.1:{redis_port}"], max_connections=1)  # fmt: skip
    info = engine.serving("db")
    first = redis.Redis(port=info.port, socket_timeout=WAIT)
    assert first.ping()
    assert _shut(info.port)
    assert engine.call("proxies.stats", name="db").refused == {"connections": 1}
    first.close()
    wait_for(lambda: redis.Redis(port=info.port, socket_timeout=WAIT).ping(), "a free slot")


def test_tls_termination_with_the_engines_certificate(engine: Running, redis_port: int) -> None:
    engine.call("proxies.create", name="db", protocol="tcp", port=0, tls=True,
                targets=[f"127.0.0.1:{redis_port}"])  # fmt: skip
    info = engine.serving("db")
    assert info.tls and info.url.startswith("tcp://")
    ca = engine.core.config.home.tls_dir / "cert.pem"
    client = redis.Redis(port=info.port, ssl=True, ssl_ca_certs=str(ca), socket_timeout=WAIT)
    assert client.set("t", "x") and client.get("t") == b"x"
    client.close()
    with pytest.raises(redis.ConnectionError):  # plain text on a TLS port: no answer
        redis.Redis(port=info.port, socket_timeout=5).ping()


def test_the_engines_certificate_is_renewed_before_it_expires(
    engine: Running, redis_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    from dxflow._core._proxies import _tls

    engine.call("proxies.create", name="db", protocol="tcp", port=0, tls=True,
                targets=[f"127.0.0.1:{redis_port}"])  # fmt: skip
    info = engine.serving("db")
    cert = engine.core.config.home.tls_dir / "cert.pem"
    old = cert.read_text()
    monkeypatch.setattr(_tls, "RENEW_BEFORE", datetime.timedelta(days=100_000))  # "expiring"
    engine.run(engine.core.proxies.renew_certificates())
    new = cert.read_text()
    assert new != old
    presented = ssl.get_server_certificate(("127.0.0.1", info.port))
    assert ssl.PEM_cert_to_DER_cert(presented) == ssl.PEM_cert_to_DER_cert(new)


def _presented_by(context: ssl.SSLContext) -> bytes:
    """The certificate (DER) a fresh handshake with a server using `context` gets."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        pem = ssl.get_server_certificate(listener.getsockname()[:2], timeout=WAIT)
    finally:
        thread.join(WAIT)
        listener.close()
    return ssl.PEM_cert_to_DER_cert(pem)


def test_the_listeners_certificate_is_renewed_with_no_tls_proxy(
    engine: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datetime

    from dxflow._core._proxies import _tls

    # What a server booted with --tls hands the core: the context its listener presents.
    listener = _tls.engine_context(engine.core.config)
    engine.core.proxies.serve_tls(listener)
    cert = engine.core.config.home.tls_dir / "cert.pem"
    old = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert _presented_by(listener) == old
    monkeypatch.setattr(_tls, "RENEW_BEFORE", datetime.timedelta(days=100_000))  # "expiring"
    engine.run(engine.core.proxies.renew_certificates())  # not a single proxy exists
    new = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert new != old
    assert _presented_by(listener) == new  # the same context object, reloaded in place


def test_a_certificate_that_does_not_load_leaves_the_listener_as_it_was(tmp_path: Path) -> None:
    from dxflow._core._proxies._tls import engine_context, reload, self_signed

    config = load_config(tmp_path / "home")
    config.home.ensure()
    listener = engine_context(config)
    before = _presented_by(listener)
    self_signed(tmp_path / "a.pem", tmp_path / "a.key")
    self_signed(tmp_path / "b.pem", tmp_path / "b.key")
    with pytest.raises(ssl.SSLError):  # a rotation half done: a key of another certificate
        reload([listener], tmp_path / "a.pem", tmp_path / "b.key")
    assert _presented_by(listener) == before
    reload([listener], tmp_path / "b.pem", tmp_path / "b.key")
    assert _presented_by(listener) == ssl.PEM_cert_to_DER_cert((tmp_path / "b.pem").read_text())


def test_tls_with_a_certificate_from_the_object_store(
    engine: Running, redis_port: int, tmp_path: Path
) -> None:
    from dxflow._core._proxies._tls import self_signed

    self_signed(tmp_path / "c.pem", tmp_path / "k.pem")
    storage = engine.core.objects.storage.root
    (storage / "tls").mkdir()
    shutil.copy(tmp_path / "c.pem", storage / "tls" / "c.pem")
    shutil.copy(tmp_path / "k.pem", storage / "tls" / "k.pem")
    bad = engine.error("proxies.create", name="db", protocol="tcp", port=0, tls=True,
                       targets=[f"127.0.0.1:{redis_port}"], tls_cert="tls/k.pem",
                       tls_key="tls/k.pem")  # fmt: skip
    assert isinstance(bad, InvalidRequest) and "tls_cert" in str(bad)
    assert rows(engine.core) == []
    engine.call("proxies.create", name="db", protocol="tcp", port=0, tls=True,
                targets=[f"127.0.0.1:{redis_port}"], tls_cert="tls/c.pem",
                tls_key="tls/k.pem")  # fmt: skip
    info = engine.serving("db")
    context = ssl.create_default_context(cafile=str(tmp_path / "c.pem"))
    raw = socket.create_connection(("127.0.0.1", info.port), timeout=WAIT)
    with context.wrap_socket(raw, server_hostname="localhost") as sock:
        sock.sendall(b"PING\r\n")
        assert sock.recv(64) == b"+PONG\r\n"


# -- the engine restarts --------------------------------------------------------------------


def test_proxies_come_back_with_the_engine(tmp_path: Path, redis_port: int) -> None:
    home = tmp_path / "home"
    first = Running(home)
    first.call("proxies.create", name="db", protocol="tcp", port=0,
               targets=[f"127.0.0.1:{redis_port}"], allow=["127.0.0.0/8"])  # fmt: skip
    first.call("proxies.create", name="web", targets=["127.0.0.1:8888"], auth="link")
    link = first.call("proxies.link", name="web")
    port = first.serving("db").port
    first.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    second = Running(home)
    try:
        # At once, before the background work starts: a client waits, it is not refused.
        early = socket.create_connection(("127.0.0.1", port), timeout=5)
        early.sendall(b"PING\r\n")
        early.settimeout(WAIT)
        assert early.recv(64) == b"+PONG\r\n"
        early.close()
        names = [p.name for p in second.call("proxies.list").proxies]
        assert names == ["db", "web"]
        info = second.serving("db")
        assert info.port == port and info.allow == ["127.0.0.0/8"]
        assert redis.Redis(port=port, socket_timeout=WAIT).ping()
        web = second.core.proxies.by_name("web")
        assert web is not None and link.id in web.links  # its links too
    finally:
        second.close()


def test_a_port_taken_meanwhile_is_an_error_not_a_crash(tmp_path: Path, redis_port: int) -> None:
    home = tmp_path / "home"
    first = Running(home)
    first.call("proxies.create", name="db", protocol="tcp", port=0,
               targets=[f"127.0.0.1:{redis_port}"])  # fmt: skip
    first.call("proxies.create", name="other", protocol="tcp", port=0,
               targets=[f"127.0.0.1:{redis_port}"])  # fmt: skip
    port = first.serving("db").port
    first.close()
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", port))
    squatter.listen()
    second = Running(home)
    try:
        info = wait_for(
            lambda: (i := second.call("proxies.get", name="db")).state == "error" and i,
            "the error state",
        )
        assert f"127.0.0.1:{port} is in use" in info.error
        other = second.serving("other")  # the others serve
        assert redis.Redis(port=other.port, socket_timeout=WAIT).ping()
    finally:
        second.close()
        squatter.close()


# -- bad input changes nothing --------------------------------------------------------------


def test_each_bad_input_has_its_error_and_changes_nothing(engine: Running, redis_port: int) -> None:
    ok = [f"127.0.0.1:{redis_port}"]
    engine.call("proxies.create", name="taken", targets=ok)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    key = engine.key("alice", Permission.PROXY | Permission.WORKFLOW)
    home = engine.core.config.home.root
    cases: list[tuple[dict[str, Any], type[ApiError], str, Context | None]] = [
        ({"targets": ok, "protocol": "tcp", "port": busy.getsockname()[1]}, Conflict,
         "port=0", None),
        ({"targets": ok, "allow": ["10.0.0.0/33"]}, InvalidRequest, "allow:", None),
        ({"targets": ok, "rate": "100 per minute"}, InvalidRequest, "rate:", None),
        ({"targets": ok, "name": "taken"}, Conflict, "exist_ok=True", None),
        ({"targets": ok, "protocol": "tcp", "port": 0, "auth": "token"}, InvalidRequest,
         "allow/deny", None),
        ({"targets": ["8.8.8.8:53"]}, PermissionDenied, "proxy_public_targets", key),
        ({"targets": ["169.254.169.254:80"]}, PermissionDenied, "link-local", key),
        ({"targets": [f"unix:{home}/run/engine.sock"]}, PermissionDenied, "engine home", key),
        ({"targets": ["unix:/var/run/docker.sock"]}, PermissionDenied, "Docker socket", key),
        ({"workflow": "nope", "service": "web", "service_port": 80}, NotFound, "nope", key),
        ({"targets": ok, "host": "192.0.2.77", "port": 0}, InvalidRequest, "host:", None),
    ]  # fmt: skip
    # A privileged port: test_a_privileged_port_without_the_right_to_bind_it (an engine
    # of its own, without CAP_NET_BIND_SERVICE: this one runs as the tests' user, root here).
    listening_before = _listening()
    for fields, error, words, ctx in cases:
        payload = {"name": "bad", **fields}
        raised = engine.error("proxies.create", ctx, **payload)
        assert isinstance(raised, error) and words in str(raised), (fields, raised)
        assert sorted(rows(engine.core)) == ["taken"], fields
        assert sorted(engine.core.proxies._live) == ["taken"], fields
    assert _listening() == listening_before  # no socket left behind
    assert engine.core.lifecycle.jobs.keys() == {
        j for j in engine.core.lifecycle.jobs if not j.startswith("proxy.")
    }
    busy.close()
    # An update with bad input leaves the proxy as it was.
    before = engine.call("proxies.get", name="taken")
    for fields in ({"rate": "fast"}, {"deny": ["x"]}, {"targets": ["127.0.0.1"]}):
        engine.error("proxies.update", name="taken", **fields)
    after = engine.call("proxies.get", name="taken")
    assert after == before


NET_BIND_SERVICE = 10
"""CAP_NET_BIND_SERVICE's bit (linux/capability.h)."""


def _capabilities(pid: int | str, which: str) -> int:
    """A process's capability set (`CapEff`, `CapBnd`, ...) as a bit mask."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(which + ":"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no {which} in /proc/{pid}/status")


def _without_net_bind_service() -> list[str]:
    """A command prefix that runs a program without CAP_NET_BIND_SERVICE. Root has it:
    setpriv drops it from the bounding set (what a root exec gets is capped by it, the
    engine's children included) and from the inheritable set."""
    if not _capabilities("self", "CapEff") >> NET_BIND_SERVICE & 1:
        return []  # not root (nor given the capability): nothing to drop
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop CAP_NET_BIND_SERVICE"
    return [setpriv, "--inh-caps=-net_bind_service", "--bounding-set=-net_bind_service", "--"]


def test_a_privileged_port_without_the_right_to_bind_it(
    tmp_path: Path, redis_port: int
) -> None:  # fmt: skip
    """The tests run as root, who may bind any port; an engine booted without
    CAP_NET_BIND_SERVICE may not, and says so through the SDK and over HTTP."""
    start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    if start <= 80:  # the sysctl is per network namespace; Linux's default is 1024
        pytest.skip(
            f"net.ipv4.ip_unprivileged_port_start is {start} in this network namespace: "
            "any process may bind port 80, so the refusal cannot happen"
        )
    booted = boot(tmp_path / "home", prefix=_without_net_bind_service())
    try:
        # the engine really lacks the right, and cannot get it back
        for which in ("CapEff", "CapPrm", "CapBnd"):
            assert not _capabilities(booted.pid, which) >> NET_BIND_SERVICE & 1, which
        engine_process = psutil.Process(booted.pid)

        def listening() -> set[tuple[str, int]]:
            return {(c.laddr.ip, c.laddr.port) for c in engine_process.net_connections("inet")
                    if c.status == psutil.CONN_LISTEN}  # fmt: skip

        target = f"127.0.0.1:{redis_port}"
        with dxflow.Engine(booted.url, key=booted.master_key) as engine:
            sockets = listening()
            for protocol in ("http", "tcp"):
                with pytest.raises(dxflow.PermissionDenied) as refused:
                    engine.proxies.create("low", target=target, protocol=protocol, port=80,
                                          auth="none")  # fmt: skip
                assert refused.value.message == (
                    "port: 80 is a privileged port (below 1024) and the engine's user may "
                    "not bind it; give port=0 or a port from 1024 up (or run the engine "
                    "with CAP_NET_BIND_SERVICE)"
                ), protocol
                assert refused.value.details == {"field": "port", "port": 80}
            # over HTTP: a 403 with the same envelope
            answer = httpx.post(
                f"{booted.url}/api/proxies", trust_env=False, timeout=60,
                headers={"Authorization": f"Bearer {engine.token().token}"},
                json={"name": "low", "targets": [target], "port": 80, "auth": "none"},
            )  # fmt: skip
            assert answer.status_code == 403, answer.text
            error = answer.json()["error"]
            assert error["code"] == "permission_denied"
            assert error["message"].startswith("port: 80 is a privileged port")
            # nothing changed: no proxy, no socket
            assert list(engine.proxies.list()) == []
            with pytest.raises(dxflow.NotFound):
                engine.proxies.get("low")
            assert listening() == sockets
            # only the port was wrong: with port=0 the same proxy is made
            made = engine.proxies.create("low", target=target, protocol="tcp", port=0,
                                         auth="none")  # fmt: skip
            assert made.info.port and made.info.port >= start
            assert redis.Redis(port=made.info.port, socket_timeout=WAIT).ping()
            made.remove()
    finally:
        run_cli("boot", "down", "--home", booted.home, check=False)


def _listening() -> set[str]:
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return {line.split()[1] for line in lines if line.split()[3] == "0A"}


# -- keys see only their own ----------------------------------------------------------------


def test_keys_see_and_change_only_their_own(engine: Running, redis_port: int) -> None:
    alice = engine.key("alice", Permission.PROXY)
    bob = engine.key("bob", Permission.PROXY)
    engine.call("proxies.create", alice, name="mine", targets=[f"127.0.0.1:{redis_port}"])
    assert [p.name for p in engine.call("proxies.list", bob).proxies] == []
    for op, extra in (("proxies.get", {}), ("proxies.update", {"rate": "1/s"}),
                      ("proxies.remove", {}), ("proxies.stats", {}), ("proxies.links", {}),
                      ("proxies.link", {}), ("proxies.unlink", {"id": "x"})):  # fmt: skip
        raised = engine.error(op, bob, name="mine", **extra)
        assert isinstance(raised, NotFound) and "mine" in str(raised), op
    taken = engine.error("proxies.create", bob, name="mine", targets=["127.0.0.1:1"],
                         exist_ok=True)  # fmt: skip
    assert isinstance(taken, Conflict)
    assert engine.call("proxies.get", alice, name="mine").rate is None  # unchanged
    master = engine.call("proxies.list").proxies
    assert [(p.name, p.created_by) for p in master] == [("mine", "alice")]
    engine.call("proxies.update", alice, name="mine", rate="10/s")
    engine.call("proxies.remove", name="mine")  # MASTER may


def test_exist_ok_updates_ones_own_proxy(engine: Running, redis_port: int) -> None:
    target = [f"127.0.0.1:{redis_port}"]
    first = engine.call("proxies.create", name="db", protocol="tcp", port=0, targets=target)
    again = engine.call("proxies.create", name="db", protocol="tcp", port=0, targets=target,
                        allow=["127.0.0.1"], exist_ok=True)  # fmt: skip
    assert again.port == first.port and again.allow == ["127.0.0.1"]
    clash = engine.error("proxies.create", name="db", targets=target, exist_ok=True)
    assert isinstance(clash, Conflict) and "protocol" in str(clash)


def test_remove_stops_the_listener_and_ends_connections(engine: Running, redis_port: int) -> None:
    engine.call("proxies.create", name="db", protocol="tcp", port=0,
                targets=[f"127.0.0.1:{redis_port}"])  # fmt: skip
    info = engine.serving("db")
    client = redis.Redis(port=info.port, socket_timeout=WAIT)
    assert client.ping()
    removed = engine.call("proxies.remove", name="db")
    assert removed.state == "stopped" and rows(engine.core) == []
    with pytest.raises(redis.ConnectionError):
        client.ping()  # its connection ended
    wait_for(lambda: _refused(info.port), "the listener to close")


def _shut(port: int) -> bool:
    """The proxy closes a new connection at once (a redis PING gets no answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        try:
            sock.sendall(b"PING\r\n")
            return sock.recv(64) == b""
        except ConnectionResetError:
            return True


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


# -- two engine processes on one home (a notebook's engine next to a server) ---------------


def test_another_engine_on_the_home_follows_and_takes_over(tmp_path: Path, redis_port: int) -> None:
    home = tmp_path / "home"
    notebook, server = Running(home), Running(home)
    try:
        notebook.call("proxies.create", name="web", targets=["127.0.0.1:8888"])
        assert server.core.proxies.by_name("web") is not None  # at once: looked up on a miss
        notebook.call("proxies.create", name="db", protocol="tcp", port=0,
                      targets=[f"127.0.0.1:{redis_port}"])  # fmt: skip
        port = notebook.serving("db").port
        wait_for(lambda: server.call("proxies.get", name="db").state == "error",
                 "the server to see the port taken")  # fmt: skip
        notebook.call("proxies.update", name="web", allow=["10.0.0.0/8"])
        wait_for(lambda: server.call("proxies.get", name="web").allow == ["10.0.0.0/8"],
                 "the update to show")  # fmt: skip
        link = notebook.call("proxies.update", name="web", auth="link")
        assert link.auth == "link"
        made = notebook.call("proxies.link", name="web")
        wait_for(lambda: made.id in server.core.proxies._live["web"].links, "the link")
    finally:
        notebook.close()
    try:
        wait_for(lambda: server.core.proxies._live["db"].serving, "the server to take over")
        assert redis.Redis(port=port, socket_timeout=WAIT).ping()
        other = Running(home)  # a third: removes one
        try:
            other.call("proxies.remove", name="web")
        finally:
            other.close()
        wait_for(lambda: "web" not in server.core.proxies._live, "the removal to show")
        assert server.core.proxies.by_name("web") is None
    finally:
        server.close()


# -- a workflow service's containers, followed when recreated -------------------------------


def _http_get(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as sock:
        sock.sendall(b"GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_workflow_service_is_reached_and_followed(
    engine: Running, project_name: str, docker_client: Any
) -> None:
    from tests.docker.images import BUSYBOX_IMAGE

    compose = {"services": {"web": {
        "image": BUSYBOX_IMAGE, "command": ["httpd", "-f", "-p", "80", "-h", "/www"],
    }}}  # fmt: skip
    engine.call("workflows.create", name=project_name, compose=compose)
    missing = engine.error("proxies.create", name="app", protocol="tcp", port=0,
                           workflow=project_name, service="nope", service_port=80)  # fmt: skip
    assert isinstance(missing, NotFound) and "has no service 'nope'" in str(missing)

    def up() -> None:
        async def drain() -> None:
            ctx = engine.core.local_context()
            async for _ in engine.core.dispatcher.stream(
                ctx, OPERATIONS["workflows.up"], {"name": project_name}
            ):
                pass

        engine.run(drain())

    up()
    engine.call("proxies.create", name="app", protocol="tcp", port=0, workflow=project_name,
                service="web", service_port=80)  # fmt: skip
    info = engine.serving("app")

    def address() -> str:
        (container,) = docker_client.containers.list(
            filters={"label": f"com.docker.compose.project={project_name}"}
        )
        networks = container.attrs["NetworkSettings"]["Networks"]
        return f"{next(iter(networks.values()))['IPAddress']}:80"

    first = address()
    wait_for(lambda: [t.address for t in engine.call("proxies.get", name="app").pool]
             == [first], "the container to be resolved")  # fmt: skip
    assert b"hello from dxflow" in _http_get(info.port)
    (target,) = engine.call("proxies.get", name="app").pool
    assert target.target.startswith(f"{project_name}/web#")

    # Recreated (a new container, maybe at a new address): the proxy follows it.
    for container in docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project_name}"}
    ):
        container.remove(force=True)
    up()
    second = address()
    wait_for(lambda: b"hello from dxflow" in _http_get(info.port), "the new container")
    assert [t.address for t in engine.call("proxies.get", name="app").pool] == [second]


# -- active health checks ---------------------------------------------------------------------


class _Health:
    """A real HTTP server whose /health answers `status` (changed by the test)."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = owner.status if self.path == "/health" else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.status = 200
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_active_health_checks_take_targets_out_and_back(engine: Running) -> None:
    good, flaky = _Health(), _Health()
    try:
        checks = {"path": "/health", "interval": 0.2, "healthy": 2, "unhealthy": 2}
        engine.call("proxies.create", name="lb", protocol="http", health=checks,
                    targets=[f"127.0.0.1:{good.port}", f"127.0.0.1:{flaky.port}"])  # fmt: skip

        def health() -> dict[str, str]:
            pool = engine.call("proxies.get", name="lb").pool
            return {t.target.rsplit(":", 1)[1]: t.health for t in pool}

        wait_for(lambda: set(health().values()) == {"healthy"}, "both checked healthy")
        flaky.status = 503
        wait_for(lambda: health()[str(flaky.port)] == "unhealthy", "the 503 to take it out")
        assert health()[str(good.port)] == "healthy"
        live = engine.core.proxies._live["lb"]
        assert all(live.pool.pick(f"10.0.0.{i}").upstream.port == good.port for i in range(9))
        (state,) = [t for t in engine.call("proxies.get", name="lb").pool if t.health != "healthy"]
        assert "503" in (state.error or "")
        flaky.status = 302  # a redirect is healthy too
        wait_for(lambda: health()[str(flaky.port)] == "healthy", "two passes to bring it back")
    finally:
        good.close()
        flaky.close()


def test_tcp_health_checks_connect(engine: Running, redis_port: int) -> None:
    dead = free_port()
    engine.call("proxies.create", name="db", protocol="tcp", port=0,
                targets=[f"127.0.0.1:{redis_port}", f"127.0.0.1:{dead}"],
                health={"interval": 0.2, "unhealthy": 1})  # fmt: skip

    def health() -> dict[str, str]:
        return {t.target: t.health for t in engine.call("proxies.get", name="db").pool}

    wait_for(lambda: health() == {f"127.0.0.1:{redis_port}": "healthy",
                                  f"127.0.0.1:{dead}": "unhealthy"}, "the checks")  # fmt: skip
    info = engine.serving("db")
    for _ in range(5):
        assert redis.Redis(port=info.port, socket_timeout=WAIT).ping()
    stats = engine.call("proxies.stats", name="db")
    assert {t.target: t.failures for t in stats.targets}[f"127.0.0.1:{dead}"] == 0


# -- TCP ends: half-close, a target that closes, a client that goes -------------------------


class _Target:
    """A raw TCP target run by `handle(conn)` in a thread per connection."""

    def __init__(self, handle: Callable[[socket.socket], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.ended = threading.Event()

        def serve() -> None:
            while True:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                with conn:
                    handle(conn)
                self.ended.set()

        threading.Thread(target=serve, daemon=True).start()

    def close(self) -> None:
        self.sock.close()


def _until_eof(conn: socket.socket) -> int:
    total = 0
    while chunk := conn.recv(1 << 16):
        total += len(chunk)
    return total


def test_a_half_close_passes_through(engine: Running) -> None:
    def count(conn: socket.socket) -> None:  # answers once the client is done sending
        conn.sendall(str(_until_eof(conn)).encode())

    target = _Target(count)
    try:
        engine.call("proxies.create", name="t", protocol="tcp", port=0,
                    targets=[f"127.0.0.1:{target.port}"])  # fmt: skip
        info = engine.serving("t")
        with socket.create_connection(("127.0.0.1", info.port), timeout=WAIT) as sock:
            sock.sendall(b"x" * 300_000)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(64):
                answer += chunk
            assert answer == b"300000"  # it got all, then the answer came back
    finally:
        target.close()


def test_a_target_that_closes_mid_stream_ends_the_client(engine: Running) -> None:
    def half(conn: socket.socket) -> None:
        conn.sendall(b"y" * 100_000)  # then closes, mid-"response"

    target = _Target(half)
    try:
        engine.call("proxies.create", name="t", protocol="tcp", port=0,
                    targets=[f"127.0.0.1:{target.port}"])  # fmt: skip
        info = engine.serving("t")
        with socket.create_connection(("127.0.0.1", info.port), timeout=WAIT) as sock:
            sock.sendall(b"GET\r\n")
            assert _until_eof(sock) == 100_000  # all it sent, then the end
        wait_for(lambda: engine.call("proxies.stats", name="t").open_connections == 0,
                 "the connection to close")  # fmt: skip
    finally:
        target.close()


def test_a_client_that_goes_ends_the_targets_side(engine: Running) -> None:
    received: list[int] = []

    def sink(conn: socket.socket) -> None:
        received.append(_until_eof(conn))

    target = _Target(sink)
    try:
        engine.call("proxies.create", name="t", protocol="tcp", port=0,
                    targets=[f"127.0.0.1:{target.port}"])  # fmt: skip
        info = engine.serving("t")
        sock = socket.create_connection(("127.0.0.1", info.port), timeout=WAIT)
        sock.sendall(b"z" * 50_000)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset, mid-"body"
        assert target.ended.wait(WAIT)  # the target's side was closed too
        wait_for(lambda: engine.call("proxies.stats", name="t").open_connections == 0,
                 "the connection to close")  # fmt: skip
    finally:
        target.close()
