"""The test bed itself, for real: namespaces that reach each other, faults, the delay proxy,
engines in namespaces, and cleanup. Every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from tests.testbed import DelayProxy, Fabric, Host, NsEngine, sweep_stale
from tests.testbed.netns import PREFIX, netns_names, sh, wait_until

pytestmark = pytest.mark.slow

PY = sys.executable

UDP_RECEIVER = """
import select, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
n = 0
while True:  # datagrams until stdin closes (the socket drained first), at most 10 s
    ready, _, _ = select.select([s, sys.stdin], [], [], 10)
    if s in ready:
        s.recv(64)
        n += 1
        continue
    break
print(n, flush=True)
"""

UDP_SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    time.sleep(0.002)  # paced: the first ones wait for ARP, whose queue is short
"""

ECHO_SERVER = """
import socket, sys, threading
s = socket.create_server(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
def echo(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
"""

LINES_CLIENT = """
import socket, sys, time
t = time.monotonic()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
n = int(sys.argv[3])
want = b"".join(b"line %d\\n" % i for i in range(n))
for i in range(n):
    c.sendall(b"line %d\\n" % i)
got = b""
while len(got) < len(want) and (data := c.recv(65536)):
    got += data
print(got == want, round(time.monotonic() - t, 3))
"""

TIMED_GET = """
import sys, time, urllib.request
t = time.monotonic()
with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
    print(response.status, round(time.monotonic() - t, 3))
"""


def http_code(client: Host, url: str) -> str:
    """curl's status code from `client` ("000": no answer within a second)."""
    done = client.run("curl", "-s", "--max-time", "1", "-o", "/dev/null", "-w", "%{http_code}",
                      url, check=False)  # fmt: skip
    return done.stdout.strip() or "000"


def http_server(host: Host, port: int, client: Host) -> str:
    """python's http.server on `host`; its URL, once `client` gets a 200 from it."""
    host.popen(PY, "-m", "http.server", str(port), "--bind", host.address,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://{host.address}:{port}/"
    wait_until(lambda: http_code(client, url) == "200", 10, what=f"{url} from {client.name}")
    return url


def udp_count(sender: Host, receiver: Host, count: int, port: int = 9999) -> int:
    """How many of `count` datagrams from `sender` reach `receiver`."""
    listener = receiver.popen(PY, "-c", UDP_RECEIVER, str(port),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert listener.stdout is not None
        assert listener.stdout.readline() == "ready\n"
        sender.run(PY, "-c", UDP_SENDER, receiver.address, str(port), str(count))
        time.sleep(0.2)
        out, _ = listener.communicate(input="", timeout=5)
        return int(out)
    finally:
        listener.kill()
        listener.wait(timeout=5)


def echo_server(host: Host, port: int) -> None:
    server = host.popen(PY, "-c", ECHO_SERVER, str(port), stdout=subprocess.PIPE, text=True)
    assert server.stdout is not None
    assert server.stdout.readline() == "ready\n"


def ours() -> list[str]:
    return [name for name in netns_names() if name.startswith(f"{PREFIX}{os.getpid()}-")]


# -- namespaces and faults ---------------------------------------------------------------


def test_hosts_reach_each_other(fabric) -> None:
    fab = fabric(["a", "b"])
    a, b = fab.host("a"), fab.host("b")
    assert (a.address, b.address) == ("10.213.4.1", "10.213.4.2")
    url_a = http_server(a, 8080, b)
    url_b = http_server(b, 8080, a)
    assert http_code(b, url_a) == http_code(a, url_b) == "200"
    # a host's own processes are in its namespace, and only there
    assert len(a.pids()) == len(b.pids()) == 1


def test_partition_and_heal(fabric) -> None:
    fab = fabric(["a", "b", "c"])
    a, b, c = fab["a"], fab["b"], fab["c"]
    url_a = http_server(a, 8080, b)
    url_c = http_server(c, 8080, b)
    a.partition()
    assert http_code(b, url_a) == "000"
    assert http_code(b, url_c) == "200"  # the others still reach each other
    a.heal()
    wait_until(lambda: http_code(b, url_a) == "200", 5, what="healed")


def test_drop_from_is_one_way(fabric) -> None:
    fab = fabric(["a", "b"])
    a, b = fab["a"], fab["b"]
    assert udp_count(b, a, 5) == 5
    a.drop_from(b)
    assert udp_count(b, a, 5) == 0
    assert udp_count(a, b, 5) == 5  # the other way still goes
    a.clear_faults()
    assert udp_count(b, a, 5) == 5


def test_loss(fabric) -> None:
    fab = fabric(["a", "b"])
    a, b = fab["a"], fab["b"]
    a.loss(1.0)
    assert udp_count(b, a, 10) == 0
    a.loss(0.5)
    assert 0 < udp_count(b, a, 100) < 100
    a.loss(0.0)
    assert udp_count(b, a, 20) == 20
    a.loss(1.0)
    a.clear_faults()
    assert udp_count(b, a, 20) == 20


# -- the delay proxy ---------------------------------------------------------------------


@pytest.fixture
def local_echo() -> Iterator[int]:
    """An echo server on 127.0.0.1 in this process; its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                conn.settimeout(10)
                threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


def recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def round_trip(conn: socket.socket, payload: bytes) -> float:
    start = time.monotonic()
    conn.sendall(payload)
    assert recv_exactly(conn, len(payload)) == payload
    return time.monotonic() - start


def test_delay_proxy_order_pause_delay_cut(local_echo: int) -> None:
    with DelayProxy("127.0.0.1", 0, "127.0.0.1", local_echo).start() as proxy:
        conn = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        with conn:
            # bytes in order and intact, in chunks of every size
            blob = os.urandom(1 << 20)
            sender = threading.Thread(target=conn.sendall, args=(blob,))
            sender.start()
            assert recv_exactly(conn, len(blob)) == blob
            sender.join(timeout=10)
            # a later chunk with a shorter delay still comes after an earlier one
            proxy.set_delay(0.3)
            conn.sendall(b"first;")
            proxy.set_delay(0)
            conn.sendall(b"second")
            assert recv_exactly(conn, 12) == b"first;second"
            # pause holds everything, resume releases it in order
            proxy.pause()
            assert proxy.stats()["paused"]
            conn.sendall(b"held-1;")
            conn.sendall(b"held-2")
            conn.settimeout(0.3)
            with pytest.raises(TimeoutError):
                conn.recv(100)
            conn.settimeout(10)
            proxy.resume()
            assert recv_exactly(conn, 13) == b"held-1;held-2"
            # set_delay delays each way (only lower bounds are exact: upper ones generous)
            proxy.set_delay(0.4)
            assert round_trip(conn, b"slow") >= 0.8
            proxy.set_delay(0)
            assert round_trip(conn, b"fast") < 0.7
            # a spike, then back to no delay
            proxy.spike(0.4, 0.6)
            assert round_trip(conn, b"spiked") >= 0.4
            time.sleep(0.6)
            assert round_trip(conn, b"after") < 0.35
            # cut: the connection is reset; new ones work
            assert proxy.stats()["connections"] == 1
            proxy.cut()
            with contextlib.suppress(ConnectionResetError):
                assert conn.recv(100) == b""
        wait_until(lambda: proxy.stats()["connections"] == 0, 5, what="cut")
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as again:
            assert round_trip(again, b"again") < 5
        assert proxy.stats()["accepted"] == 2


def test_delay_proxy_between_namespaces(fabric) -> None:
    fab = fabric(["client", "proxy", "server"])
    client, middle, server = fab["client"], fab["proxy"], fab["server"]
    echo_server(server, 9000)
    proxy = DelayProxy(middle.address, 8000, server.address, 9000).start(middle)
    proxy.set_delay(0.2)
    done = client.run(PY, "-c", LINES_CLIENT, middle.address, "8000", "200")
    same, elapsed = done.stdout.split()
    assert same == "True", done
    assert float(elapsed) >= 0.3  # 0.2 s each way
    assert proxy.stats()["forwarded"] >= 2 * sum(len(f"line {i}\n") for i in range(200))
    proxy.stop()
    assert proxy.process is not None and proxy.process.poll() is not None


# -- engines -----------------------------------------------------------------------------


def test_engine_in_a_namespace(fabric, make_ns_engine) -> None:
    fab = fabric(["master", "a1"])
    master, a1 = fab["master"], fab["a1"]
    engine: NsEngine = make_ns_engine(master)  # healthy over its unix socket
    assert engine.master_key.exists()
    assert engine.pid in master.pids()
    with engine.client() as sdk:
        assert sdk.health().status == "ok"
    assert engine.tcp_health(a1) == engine.health()  # from another host, over the bridge
    pid = engine.pid
    engine.kill9()
    assert not engine.running()
    assert not os.path.exists(f"/proc/{pid}")
    assert master.pids() == []
    assert engine.health() is None
    assert engine.tcp_health(a1) is None
    engine.restart()
    assert engine.pid != pid
    assert engine.tcp_health(a1) is not None
    assert engine.log_file.stat().st_size > 0
    # a latency spike between a1 and the engine, through a delay proxy on a1: 0.5 s each way
    proxy = DelayProxy(a1.address, 7500, master.address, engine.port).start(a1)
    proxy.spike(0.5, 5.0)
    done = a1.run(PY, "-c", TIMED_GET, f"http://{a1.address}:7500/api/health")
    status, elapsed = done.stdout.split()
    assert status == "200"
    assert float(elapsed) >= 1.0
    assert engine.stop() == 0  # a graceful stop
    assert master.pids() == []


# -- cleanup -----------------------------------------------------------------------------


def test_cleanup_leaves_nothing(testbed_ready) -> None:
    with Fabric(["a", "b"]) as fab:
        names = fab.namespaces()
        assert set(names) <= set(ours())
        sleeper = fab["a"].popen("sleep", "300")
    assert sleeper.poll() is not None
    assert not set(names) & set(netns_names())
    # a set-up that fails half way removes what it made
    broken = Fabric(["a", "b"], subnet="10.213.999")
    with pytest.raises(subprocess.CalledProcessError):
        broken.start()
    assert not set(broken.namespaces()) & set(netns_names())
    # the namespaces of a run that is gone are swept
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = f"{PREFIX}{gone.pid}-1-sw"
    sh("ip", "netns", "add", stale)
    try:
        assert stale in sweep_stale()
        assert stale not in netns_names()
    finally:
        sh("ip", "netns", "del", stale, check=False)
    assert ours() == []
