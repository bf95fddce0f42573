"""HttpTransport behaviour that needs a misbehaving network: a fake httpx transport
(unit tests only) that fails connections on demand and counts what reached it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from websockets.datastructures import Headers

from dxflow import EngineUnavailable, PermissionDenied, TransportError, Unauthenticated
from dxflow._keypairs import generate_key_pair, load_private_key
from dxflow._operations import OPERATIONS
from dxflow._transports._base import FileSlice, as_chunks
from dxflow._transports._http import HttpTransport


class FlakyNetwork(httpx.AsyncBaseTransport):
    """Fails the first `failures` requests with a connection error, then answers."""

    def __init__(self, failures: int, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.failures = failures
        self.answer = answer
        self.seen: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(f"{request.method} {request.url.path}")
        if self.failures > 0:
            self.failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return self.answer(request)


def _health(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "ok", "version": "9"})


def test_idempotent_calls_are_retried_after_a_lost_connection() -> None:
    network = FlakyNetwork(2, _health)
    transport = HttpTransport("http://engine", transport=network)
    health = anyio.run(transport.call, OPERATIONS["engine.health"], {})
    assert health.status == "ok"  # type: ignore[attr-defined]
    assert network.seen == ["GET /api/health"] * 3


def test_non_idempotent_calls_are_never_retried() -> None:
    network = FlakyNetwork(1, _health)
    transport = HttpTransport("http://engine", transport=network)
    with pytest.raises(EngineUnavailable, match="cannot reach the engine"):
        anyio.run(transport.call, OPERATIONS["auth.challenge"], {})
    assert network.seen == ["POST /api/auth/challenge"]


def test_retries_give_up_with_a_clear_error() -> None:
    network = FlakyNetwork(10, _health)
    transport = HttpTransport("http://engine", transport=network)
    with pytest.raises(EngineUnavailable, match="http://engine"):
        anyio.run(transport.call, OPERATIONS["engine.health"], {})
    assert len(network.seen) == 3


def test_invalid_requests_fail_before_the_network(tmp_path: Path) -> None:
    network = FlakyNetwork(0, _health)
    transport = HttpTransport("http://engine", transport=network)
    with pytest.raises(Exception, match="lifetime"):
        anyio.run(transport.call, OPERATIONS["auth.token"], {"lifetime": 1})
    assert network.seen == []


def test_a_non_json_error_page_is_still_a_dxflow_error() -> None:
    network = FlakyNetwork(0, lambda r: httpx.Response(502, text="<html>Bad Gateway</html>"))
    transport = HttpTransport("http://engine", transport=network)
    with pytest.raises(Exception, match="HTTP 502") as caught:
        anyio.run(transport.call, OPERATIONS["engine.health"], {})
    assert type(caught.value).__module__ == "dxflow._exceptions"


def test_refuses_to_sign_anything_but_a_challenge(tmp_path: Path) -> None:
    key = load_private_key(generate_key_pair(tmp_path / "k.pem", "ed25519").private)

    def evil(request: httpx.Request) -> httpx.Response:
        body = {"nonce": "n" * 20, "expires_at": "2030-01-01T00:00:00Z",
                "message": "transfer all the money"}  # fmt: skip
        return httpx.Response(200, content=json.dumps(body))

    transport = HttpTransport("http://engine", key, transport=FlakyNetwork(0, evil))
    with pytest.raises(Unauthenticated, match="refusing to sign"):
        anyio.run(transport.call, OPERATIONS["engine.ping"], {})


@pytest.mark.parametrize("url", ["ftp://x", "engine:7419", "http://"])
def test_bad_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="must be http"):
        HttpTransport(url)


def test_a_file_slice_reads_its_part_and_reports_progress(tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    data = os.urandom(9 << 20)
    source.write_bytes(data)
    seen: list[tuple[int, int | None]] = []
    part = FileSlice(source, 1 << 20, 6 << 20, lambda done, total: seen.append((done, total)))
    assert b"".join(part.read()) == data[1 << 20 : 7 << 20]
    assert seen == [(4 << 20, 6 << 20), (6 << 20, 6 << 20)]

    async def gather() -> bytes:  # the async path, for transports without a thread of their own
        return b"".join([chunk async for chunk in as_chunks(FileSlice(source, 0, 9 << 20))])

    assert anyio.run(gather) == data
    source.write_bytes(data[: 2 << 20])  # the file shrank under the sender
    with pytest.raises(OSError, match="shrank"):
        b"".join(FileSlice(source, 0, 9 << 20).read())


# -- the httpx client is dxflow's own ------------------------------------------------------


def test_importing_the_transport_changes_no_other_httpx_client() -> None:
    # A fresh interpreter: this one's httpcore may have been imported by anything.
    code = (
        "import httpcore\n"
        "before = (httpcore.AsyncHTTP11Connection.READ_NUM_BYTES,"
        " httpcore.HTTP11Connection.READ_NUM_BYTES)\n"
        "from dxflow._transports._http import HttpTransport\n"
        "transport = HttpTransport('http://127.0.0.1:9')\n"
        "transport._blocking_client()\n"
        "after = (httpcore.AsyncHTTP11Connection.READ_NUM_BYTES,"
        " httpcore.HTTP11Connection.READ_NUM_BYTES)\n"
        "assert before == after == (64 * 1024, 64 * 1024), (before, after)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_dxflows_own_connections_read_wide() -> None:
    transport = HttpTransport("http://127.0.0.1:9")
    pools = [transport._http._transport, transport._blocking_client()._transport]
    backends = [pool._pool._network_backend for pool in pools]  # type: ignore[attr-defined]
    assert [type(b).__name__ for b in backends] == ["_AsyncBackend", "_Backend"]
    assert type(httpx.AsyncClient()._transport._pool._network_backend).__name__ == "AutoBackend"  # type: ignore[attr-defined]


# -- lower-layer errors, translated once ----------------------------------------------------


class BrokenNetwork(httpx.AsyncBaseTransport):
    """Raises `error` for every request (mid-call: the connection was made)."""

    def __init__(self, error: type[httpx.TransportError]) -> None:
        self.error = error
        self.seen = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen += 1
        raise self.error("connection broke", request=request)


UNREACHED = [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError]
BROKEN = [httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadTimeout]


@pytest.mark.parametrize("error", UNREACHED, ids=lambda e: e.__name__)
def test_a_connection_that_cannot_be_made_is_engine_unavailable(
    error: type[httpx.TransportError],
) -> None:
    transport = HttpTransport("http://engine", transport=BrokenNetwork(error))
    with pytest.raises(EngineUnavailable, match="cannot reach the engine") as caught:
        anyio.run(transport.call, OPERATIONS["auth.challenge"], {})
    assert type(caught.value) is EngineUnavailable


@pytest.mark.parametrize("error", BROKEN, ids=lambda e: e.__name__)
def test_a_connection_that_breaks_during_a_call_is_a_transport_error(
    error: type[httpx.TransportError],
) -> None:
    network = BrokenNetwork(error)
    transport = HttpTransport("http://engine", transport=network)
    with pytest.raises(TransportError, match="lost the call to http://engine"):
        anyio.run(transport.call, OPERATIONS["auth.challenge"], {})
    assert network.seen == 1  # not idempotent: never retried
    with pytest.raises(TransportError):
        anyio.run(transport.call, OPERATIONS["engine.health"], {})
    assert network.seen == 4  # idempotent: retried twice, as before

    async def download() -> None:
        async with transport.download(OPERATIONS["objects.read"], {"path": "a"}):
            pass

    with pytest.raises(TransportError, match="lost the download"):
        anyio.run(download)


class CutStream(httpx.AsyncByteStream):
    """A body that breaks after its first line, as a TLS session dying mid-stream would."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b'{"action": "zipping", "path": "a", "entries": 1}\n'
        raise httpx.ReadError("[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC]")


def test_a_stream_cut_midway_is_a_transport_error() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=CutStream())

    transport = HttpTransport("http://engine", transport=FlakyNetwork(0, answer))
    seen = []

    async def follow() -> None:
        params = {"path": "a", "dest": "a.zip"}
        async for item in transport.stream(OPERATIONS["objects.zip"], params):
            seen.append(item)

    with pytest.raises(TransportError, match="DECRYPTION_FAILED"):
        anyio.run(follow)
    assert len(seen) == 1  # what arrived before the break was delivered


def test_a_refused_channel_is_the_error_the_engine_named(tmp_path: Path) -> None:
    # websockets' InvalidStatus (an HTTP answer instead of the upgrade) is translated too.
    from websockets.exceptions import InvalidStatus
    from websockets.http11 import Response as WsResponse

    from dxflow._transports import _ws

    refused = WsResponse(403, "Forbidden", Headers(), b'{"error": {"code": "permission_denied",'
                         b' "message": "Origin refused", "details": {}}}')  # fmt: skip

    class Refusing:
        def __await__(self):  # type: ignore[no-untyped-def]
            raise InvalidStatus(refused)
            yield

    async def attach() -> None:
        async with _ws.open_channel("http://engine", "/x", {}, {}, True):
            pass

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("websockets.asyncio.client.connect", lambda *a, **k: Refusing())
        with pytest.raises(PermissionDenied, match="Origin refused"):
            anyio.run(attach)


# -- a path prefix --------------------------------------------------------------------------


def test_every_path_goes_under_the_prefix() -> None:
    network = FlakyNetwork(0, _health)
    transport = HttpTransport("http://engine/", transport=network, prefix="/api/bridges/b1/")
    anyio.run(transport.call, OPERATIONS["engine.health"], {})
    assert network.seen == ["GET /api/bridges/b1/api/health"]
    for bad in ("api", "/x?y=1"):
        with pytest.raises(ValueError, match="prefix"):
            HttpTransport("http://engine", prefix=bad)
