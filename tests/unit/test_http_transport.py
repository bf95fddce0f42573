"""HttpTransport behaviour that needs a misbehaving network: a fake httpx transport
(unit tests only) that fails connections on demand and counts what reached it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from dxflow import EngineUnavailable, Unauthenticated
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
