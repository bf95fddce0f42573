"""Engine robustness before authentication (issue 8, section 5), attacked over real sockets.

Each test is one of the review's findings, now failing to reach what it reached: a huge
body read before authentication, a ranges call that multiplies a small request into a
huge answer, 500s with tracebacks for malformed credentials, slowloris connections held
for ever, bad tokens that lock a whole address out of logging in, and a cookie that any
site could ride. Booted engines (`dxflow boot up`) serve what needs the real server's
protocol (timeouts, the rotating log); the rest runs on the loopback app of conftest.
"""

from __future__ import annotations

import base64
import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

import dxflow
from dxflow import Permission
from dxflow._core import EngineCore
from dxflow._core._auth import RateLimiter
from dxflow._keypairs import PrivateKey, load_private_key
from dxflow._models._object import RANGES_MAX_COUNT

from ..conftest import KeyFactory, RestClient
from ..integration.conftest import Booted, boot
from ..integration.conftest import dxflow as run

MiB = 1 << 20
_CONFIG = """\
host = "127.0.0.1"
header_timeout = 2
log_max_size = "4K"
log_backups = 2
"""


@pytest.fixture(scope="module")
def booted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Booted]:
    home = tmp_path_factory.mktemp("robust") / "home"
    home.mkdir(mode=0o700)
    (home / "config.toml").write_text(_CONFIG)
    engine = boot(home)
    yield engine
    run("boot", "down", "--home", engine.home, check=False)


@pytest.fixture(scope="module")
def master_token(booted: Booted) -> str:
    return run("token", "--home", booted.home, "--lifetime", "1h").stdout.strip()


def _address(url: str) -> tuple[str, int]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _push_body(url: str, head: str, total: int, limit_s: float = 60) -> tuple[bytes, int]:
    """Send a request head then up to `total` body bytes, reading whatever comes back.

    Returns what the server answered and how many body bytes it took before answering
    or closing; it stops as soon as the server has answered (or closed).
    """
    sock = socket.create_connection(_address(url))
    sock.sendall(head.encode())
    sock.setblocking(False)
    chunk, sent, answer = b"\0" * MiB, 0, b""
    deadline = time.monotonic() + limit_s  # a bound on a hung test, not an assertion
    try:
        while sent < total and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                answer += data
                if not data or b"\r\n\r\n" in answer:
                    break
            if writable:
                try:
                    sent += sock.send(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    break
        sock.setblocking(True)
        sock.settimeout(30)
        with contextlib.suppress(OSError):  # the rest of the answer, until the server closes
            while b"\r\n\r\n" in answer and (data := sock.recv(65536)):
                answer += data
    finally:
        sock.close()
    return answer, sent


def _rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- bodies: authentication first, limits before reading ---------------------------------


def test_unauthenticated_huge_body_is_refused_before_it_is_read(booted: Booted) -> None:
    host = booted.url.split("//", 1)[1]
    total = 300 * MiB
    before = _rss(booted.pid)
    head = (
        f"POST /api/keys HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {total}\r\n\r\n"
    )
    answer, sent = _push_body(booted.url, head, total)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent < total  # answered before the client finished sending
    assert _rss(booted.pid) - before < 64 * MiB
    assert httpx.get(f"{booted.url}/api/health").status_code == 200


def test_oversized_declared_body_is_413_before_it_is_read(
    booted: Booted, master_token: str
) -> None:
    host = booted.url.split("//", 1)[1]
    total = 300 * MiB
    head = (
        f"POST /api/keys HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {master_token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
    )
    answer, sent = _push_body(booted.url, head, total)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"json_body_max" in answer
    assert sent < total


def test_chunked_body_is_counted_as_it_streams(booted: Booted, master_token: str) -> None:
    def endless() -> Iterator[bytes]:
        for _ in range(64):  # 64 MiB offered; the limit is 1 MiB
            yield b" " * MiB

    response = httpx.post(
        f"{booted.url}/api/keys", content=endless(), headers=_bearer(master_token), timeout=60
    )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "1 MiB" in error["message"] and "json_body_max" in error["message"]


def test_oversized_json_is_413_naming_the_limit_and_setting(
    rest: RestClient, core: EngineCore
) -> None:
    token = _token(core, "master")
    body = json.dumps({"identity": "x", "public_key": "k" * (MiB + 1)})
    response = rest.post("/api/keys", content=body, headers=_bearer(token))
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large"
    assert error["details"] == {"limit": MiB, "setting": "json_body_max"}
    assert "over the limit of 1 MiB (engine setting json_body_max)" in error["message"]
    assert core.keys.get("x") is None


def test_compose_bodies_have_their_own_larger_limit(rest: RestClient, core: EngineCore) -> None:
    token = _token(core, "master")
    compose = "services:\n  a:\n    image: busybox\n" + "#" * (2 * MiB)  # 2 MiB: allowed
    response = rest.post(
        "/api/workflows", json={"name": "big", "compose": compose}, headers=_bearer(token)
    )
    assert response.status_code != 413, response.text
    too_big = rest.post(
        "/api/workflows",
        content=b'{"name": "big2", "compose": "' + b"#" * (33 * MiB) + b'"}',
        headers=_bearer(token),
    )
    assert too_big.status_code == 413
    assert "compose_body_max" in too_big.json()["error"]["message"]


def test_a_permission_refusal_comes_before_the_body(
    rest: RestClient, core: EngineCore, make_key: KeyFactory
) -> None:
    make_key(Permission.OBJECT, identity="objonly")
    head = rest.post(
        "/api/keys", content=b"x" * (4 * MiB), headers=_bearer(_token(core, "objonly"))
    )
    assert head.status_code == 403  # not 413, not 422: the body was never looked at
    assert head.headers["connection"] == "close"


# -- objects.ranges ------------------------------------------------------------------


@pytest.fixture
def reader(core: EngineCore, make_key: KeyFactory, rest: RestClient) -> dict[str, str]:
    data = bytes(range(256)) * 4096 * 4  # 4 MiB
    put = rest.put(
        "/api/objects/content",
        params={"path": "big.bin"},
        content=data,
        headers=_bearer(_token(core, "master")),
    )
    assert put.status_code == 200, put.text
    make_key(Permission.OBJECT | Permission.READ_ONLY, identity="reader")
    return _bearer(_token(core, "reader"))


def test_ranges_count_and_length_are_capped(rest: RestClient, reader: dict[str, str]) -> None:
    many = [{"path": "big.bin", "start": 0, "end": 1}] * (RANGES_MAX_COUNT + 1)
    response = rest.post("/api/objects/ranges", json={"ranges": many}, headers=reader)
    assert response.status_code == 422
    assert "ranges" in response.json()["error"]["message"]
    huge = [{"path": "big.bin", "start": 0, "end": 10**15}]
    response = rest.post("/api/objects/ranges", json={"ranges": huge}, headers=reader)
    assert response.status_code == 422  # the MemoryError 500 of the review
    assert "at most 16 MiB" in response.json()["error"]["message"]


def test_ranges_response_is_capped(rest: RestClient, reader: dict[str, str]) -> None:
    # 13 KB of request once asked for 341 MiB of answer: now the total is capped.
    ranges = [{"path": "big.bin", "start": 0, "end": 4 * MiB}] * 5
    response = rest.post("/api/objects/ranges", json={"ranges": ranges}, headers=reader)
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and "ranges_max_bytes" in error["message"]
    within = rest.post("/api/objects/ranges", json={"ranges": ranges[:2]}, headers=reader)
    assert within.status_code == 200
    assert [len(base64.urlsafe_b64decode(d)) for d in within.json()["data"]] == [4 * MiB] * 2


def test_the_sdk_rebuilds_payload_too_large(
    make_engine: object, core: EngineCore, transport: str
) -> None:
    engine = make_engine()  # type: ignore[operator]
    engine.objects.pipe("f.bin", b"x" * (4 * MiB))
    with pytest.raises(dxflow.PayloadTooLarge, match="ranges_max_bytes"):
        engine.objects.cat_ranges([("f.bin", 0, 4 * MiB)] * 5)


# -- malformed credentials and bodies: 4xx, short, no traceback ---------------------------


def _malformed(url: str, token: str) -> list[tuple[str, httpx.Response]]:
    auth = _bearer(token)
    challenge = httpx.post(f"{url}/api/auth/challenge", json={}).json()

    def verify(signature: str) -> httpx.Response:
        body = {"identity": "master", "nonce": challenge["nonce"], "signature": signature}
        return httpx.post(f"{url}/api/auth/verify", json=body)

    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    return [
        ("non-ASCII token signature", httpx.get(
            f"{url}/api/ping", headers={"Authorization": b"Bearer a.b.\xe9\xe9\xe9"})),
        ("non-ASCII token", httpx.get(
            f"{url}/api/ping", headers={"Authorization": b"Bearer \xe9.\xe9.\xe9"})),
        ("garbage token", httpx.get(f"{url}/api/ping", headers=_bearer("%%%.***.!!!"))),
        ("non-ASCII handshake signature", verify("\u00e9\u00e9\u00e9\u00e9")),
        ("bad base64 signature", verify("not base64!")),
        ("deeply nested JSON", httpx.post(f"{url}/api/keys", content=deep, headers=auth)),
        ("nested past 64 levels", httpx.post(
            f"{url}/api/keys", content=b"[" * 65 + b"]" * 65, headers=auth)),
        ("invalid UTF-8", httpx.post(f"{url}/api/keys", content=b"\xff\xfe{}", headers=auth)),
        ("a form, not JSON", httpx.post(f"{url}/api/keys", data={"a": "b"}, headers=auth)),
        ("multipart", httpx.post(f"{url}/api/keys", files={"f": b"x"}, headers=auth)),
        ("tus metadata not base64", httpx.post(f"{url}/api/uploads", headers={
            **auth, "Tus-Resumable": "1.0.0", "Upload-Length": "1",
            "Upload-Metadata": "path \u00e9\u00e9".encode("latin-1")})),
        ("tus metadata bad UTF-8", httpx.post(f"{url}/api/uploads", headers={
            **auth, "Tus-Resumable": "1.0.0", "Upload-Length": "1",
            "Upload-Metadata": "path " + base64.b64encode(b"\xff").decode()})),
    ]  # fmt: skip


def test_malformed_credentials_and_bodies_are_short_4xx_without_traceback(
    booted: Booted, master_token: str
) -> None:
    for what, response in _malformed(booted.url, master_token):
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
        error = response.json()["error"]
        assert len(error["message"]) < 300, (what, error)
        assert "Traceback" not in response.text
    log = (booted.home / "logs" / "engine.log").read_text()
    assert "Traceback" not in log
    assert " ERROR " not in log


def test_an_oversized_head_is_refused(booted: Booted) -> None:
    head = "GET /api/health HTTP/1.1\r\nHost: x\r\n" + "X-Pad: " + "a" * (70 << 10) + "\r\n\r\n"
    with socket.create_connection(_address(booted.url)) as sock:
        sock.sendall(head.encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:100]


# -- slowloris: head deadline and idle connections -----------------------------------


def test_slowloris_connections_are_closed_while_the_engine_answers(booted: Booted) -> None:
    slow = []
    for _ in range(50):
        sock = socket.create_connection(_address(booted.url))
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        slow.append(sock)
    silent = [socket.create_connection(_address(booted.url)) for _ in range(10)]
    everyone = slow + silent
    closed: set[int] = set()
    deadline = time.monotonic() + 120  # bounds a hung test; header_timeout is 2 s
    while len(closed) < len(everyone) and time.monotonic() < deadline:
        for sock in slow:  # one more header line each round: never a complete head
            with contextlib.suppress(OSError):
                sock.send(b"X-Slow: 1\r\n")
        assert httpx.get(f"{booted.url}/api/health", timeout=30).status_code == 200
        readable, _, _ = select.select(everyone, [], [], 1)
        for sock in readable:
            try:
                if sock.recv(4096) == b"":
                    closed.add(sock.fileno())
            except OSError:
                closed.add(sock.fileno())
    for sock in everyone:
        sock.close()
    assert len(closed) == len(everyone)


# -- rotating log ----------------------------------------------------------------------


def test_engine_log_rotates(booted: Booted) -> None:
    for _ in range(120):  # each a one-line warning from the HTTP parser
        with socket.create_connection(_address(booted.url)) as sock:
            sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
            sock.recv(1024)
    logs = booted.home / "logs"
    assert (logs / "engine.log.1").exists() and (logs / "engine.log.2").exists()
    assert not (logs / "engine.log.3").exists()  # log_backups = 2
    for path in logs.glob("engine.log*"):
        assert path.stat().st_size <= 4096 + 1024  # log_max_size = 4K, plus the last line
    # The daemon's stdout file does not hold a second copy, which would never rotate.
    assert "Invalid HTTP request" not in (logs / "daemon.out").read_text()


# -- cookie and origin -------------------------------------------------------------------


def _token(core: EngineCore, identity: str) -> str:
    record = core.keys.get(identity)
    assert record is not None
    return core.auth.issue(record, 600).token


def test_cookie_needs_the_csrf_header_on_mutating_calls(
    rest: RestClient, core: EngineCore, make_key: KeyFactory
) -> None:
    pair = make_key(None)
    rest.cookies.set("dxflow_token", _token(core, "master"))
    assert rest.get("/api/ping").status_code == 200  # reads need no header
    body = {"identity": "mallory", "public_key": pair.public.read_text()}
    refused = rest.post("/api/keys", json=body)
    assert refused.status_code == 403
    assert "X-Dxflow-CSRF" in refused.json()["error"]["message"]
    assert core.keys.get("mallory") is None
    accepted = rest.post("/api/keys", json=body, headers={"X-Dxflow-CSRF": "1"})
    assert accepted.status_code == 200, accepted.text
    rest.cookies.clear()
    bearer = rest.delete("/api/keys/mallory", headers=_bearer(_token(core, "master")))
    assert bearer.status_code == 200  # a bearer header is no cookie: no CSRF header needed


def test_cookie_is_set_samesite_strict() -> None:
    from dxflow_server._auth import cookie_header

    header = cookie_header("t", 3600, secure=True)
    assert "SameSite=Strict" in header and "HttpOnly" in header and "Secure" in header


def test_cross_site_websocket_upgrade_is_refused(server_url: str, core: EngineCore) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    ws = server_url.replace("http://", "ws://") + "/api/shells/nope/attach"
    headers = {"Cookie": f"dxflow_token={_token(core, 'master')}"}
    with pytest.raises(InvalidStatus) as refused:
        connect(ws, additional_headers={**headers, "Origin": "https://evil.example"})
    assert refused.value.response.status_code == 403
    assert b"evil.example" in refused.value.response.body
    same = server_url  # the engine's own page: accepted, then told the shell is unknown
    with connect(ws, additional_headers={**headers, "Origin": same}) as socket_:
        assert json.loads(socket_.recv(timeout=30))["code"] == "not_found"
    with connect(ws, additional_headers=headers) as socket_:  # no Origin: not a browser
        assert json.loads(socket_.recv(timeout=30))["code"] == "not_found"


# -- rate limits -----------------------------------------------------------------------


def _login(rest: RestClient, key: PrivateKey, identity: str) -> httpx.Response:
    challenge = rest.post("/api/auth/challenge", json={}).json()
    body = {"identity": identity, "nonce": challenge["nonce"],
            "signature": key.sign_b64(challenge["message"])}  # fmt: skip
    return rest.post("/api/auth/verify", json=body)


def test_bad_tokens_do_not_lock_an_address_out_and_logins_count_per_identity(
    rest: RestClient, core: EngineCore, make_key: KeyFactory
) -> None:
    core.auth._failures = RateLimiter(3, what="failed authentications")
    core.auth._logins = RateLimiter(2, what="logins")
    alice = load_private_key(make_key(Permission.OBJECT, identity="alice").private)
    bob = load_private_key(make_key(Permission.OBJECT, identity="bob").private)
    noisy = [rest.get("/api/ping", headers=_bearer("garbage")).status_code for _ in range(6)]
    assert noisy == [401] * 3 + [429] * 3
    # The same address still logs in: failures have a budget of their own.
    assert _login(rest, alice, "alice").status_code == 200
    assert _login(rest, alice, "alice").status_code == 200
    limited = _login(rest, alice, "alice")
    assert limited.status_code == 429
    assert "too many logins from identity alice" in limited.json()["error"]["message"]
    assert _login(rest, bob, "bob").status_code == 200  # alice's budget is alice's alone


@pytest.mark.parametrize(
    ("setting", "value"),
    [("json_body_max", "lots"), ("compose_body_max", "12"), ("ranges_max_bytes", "-1M"),
     ("header_timeout", 0), ("keep_alive_timeout", 0), ("log_backups", 0)],
)  # fmt: skip
def test_a_bad_limit_is_a_config_error_naming_it(
    tmp_path: Path, setting: str, value: object
) -> None:
    from dxflow._config import load_config
    from dxflow._exceptions import ConfigError
    from dxflow._limits import Limits

    with pytest.raises(ConfigError, match=setting):
        Limits.of(load_config(tmp_path / "home", **{setting: value}))


def test_ipv6_clients_share_the_budget_of_their_64() -> None:
    from dxflow import TooManyRequests

    limiter = RateLimiter(2)
    limiter.hit("2001:db8:1:2::1:5000")
    limiter.hit("2001:db8:1:2::ffff:5001")  # another address of the same /64
    with pytest.raises(TooManyRequests, match="2001:db8:1:2::/64"):
        limiter.hit("2001:db8:1:2:abcd::9:5002")
    limiter.hit("2001:db8:1:3::1:5000")  # the next /64 has a budget of its own


def test_a_strangers_slow_body_gets_the_heads_deadline(booted: Booted) -> None:
    head = (
        "POST /api/auth/verify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        'Content-Length: 1000\r\n\r\n{"identity": '
    )
    with socket.create_connection(_address(booted.url)) as sock:
        sock.sendall(head.encode())
        sock.settimeout(120)  # bounds a hung test; header_timeout is 2 s
        answer = b""  # nothing more is sent; the engine answers, then closes its side
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"header_timeout" in answer
