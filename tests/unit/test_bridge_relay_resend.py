"""The master's relay sends a call again when a pooled connection to the agent closed
before answering (the agent's keep-alive ran out while the request was on its way),
and only when the request's body is held: a streamed body is never sent twice."""

from __future__ import annotations

from typing import Any

import anyio
import httpcore
import pytest
from starlette.requests import Request

from dxflow_server._bridges import _REPLAYABLE, _ask_agent

URL = b"http://agent/api/shells/s/run"
STALE = "Server disconnected without sending a response."


class FakeForwarder:
    """A pool whose first `failures` requests fail as a closed idle connection does."""

    def __init__(self, failures: int, error: str = STALE, status: int = 200) -> None:
        self.failures, self.error, self.status = failures, error, status
        self.bodies: list[bytes] = []
        self.renewals: list[bool] = []
        self.pool = self

    async def headers(self, ctx: Any, renew: bool = False) -> dict[str, str]:
        self.renewals.append(renew)
        return {"authorization": "Bearer t"}

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        self.bodies.append(body)
        if self.failures:
            self.failures -= 1
            raise httpcore.RemoteProtocolError(self.error)
        return httpcore.Response(self.status, content=b"ok")


def request(body: bytes, chunked: bool = False) -> Request:
    headers = (
        [(b"transfer-encoding", b"chunked")]
        if chunked
        else [(b"content-length", str(len(body)).encode())]
    )
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {"type": "http", "method": "POST", "path": "/api/shells/s/run",
             "headers": [(b"content-type", b"application/json"), *headers],
             "query_string": b""}  # fmt: skip
    return Request(scope, receive)


def ask(forwarder: FakeForwarder, req: Request) -> httpcore.Response:
    async def main() -> httpcore.Response:
        reply: httpcore.Response = await _ask_agent(forwarder, None, req, URL)
        return reply

    return anyio.run(main)


def test_a_small_body_is_sent_again_on_a_fresh_connection() -> None:
    forwarder = FakeForwarder(failures=1)
    reply = ask(forwarder, request(b'{"cmd":"echo hi"}'))
    assert reply.status == 200
    assert forwarder.bodies == [b'{"cmd":"echo hi"}'] * 2


def test_only_once() -> None:
    forwarder = FakeForwarder(failures=2)
    with pytest.raises(httpcore.RemoteProtocolError, match="without sending"):
        ask(forwarder, request(b"{}"))
    assert len(forwarder.bodies) == 2


def test_a_streamed_body_is_never_sent_twice() -> None:
    forwarder = FakeForwarder(failures=1)
    with pytest.raises(httpcore.RemoteProtocolError):
        ask(forwarder, request(b"x" * 10, chunked=True))
    assert forwarder.bodies == [b"x" * 10]


def test_a_body_over_the_limit_is_streamed_and_never_sent_twice() -> None:
    forwarder = FakeForwarder(failures=1)
    with pytest.raises(httpcore.RemoteProtocolError):
        ask(forwarder, request(b"x" * (_REPLAYABLE + 1)))
    assert len(forwarder.bodies) == 1


def test_other_protocol_errors_are_not_sent_again() -> None:
    forwarder = FakeForwarder(failures=1, error="malformed answer")
    with pytest.raises(httpcore.RemoteProtocolError, match="malformed"):
        ask(forwarder, request(b"{}"))
    assert len(forwarder.bodies) == 1


def test_a_refused_token_is_renewed_once_for_a_held_body() -> None:
    forwarder = FakeForwarder(failures=0, status=401)
    reply = ask(forwarder, request(b"{}"))
    assert reply.status == 401
    assert forwarder.renewals == [False, True]
    assert forwarder.bodies == [b"{}"] * 2
