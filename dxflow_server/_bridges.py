"""The bridges' doors on a master: the agents' link, and calls relayed to an agent.

`/api/fleet/link` is where agents dial in: a WebSocket of binary frames (see
`dxflow._core._bridges._link`), handed over by the fast path at its upgrade request and
spoken directly on the connection (`_bridges._socket`), not through uvicorn.
`/api/bridges/{name}/api/...` is the agent's own API seen through the master: each
request is admitted by the dispatcher (BRIDGE), then relayed as it is (streamed both
ways, WebSocket upgrades too) with the master's token on the agent and the caller's
identity, so the agent applies its own rules to the caller.
`/api/bridges/{name}/api/auth/...` is the master's own: a caller authenticates where its
key is registered. An agent's answers, errors included, come back untouched, so the SDK
raises the same error for a bridged engine as for a local one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from typing import Any

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from dxflow._core import EngineCore
from dxflow._core._bridges._link import LinkError
from dxflow._core._bridges._socket import FrameSocket, accept, handshake_error
from dxflow._exceptions import ApiError, EngineUnavailable, InvalidRequest
from dxflow._operations import bridges as ops
from dxflow._wire import close_code, envelope_bytes, error_frame, error_from_reply

from ._auth import context_for
from ._channels import _refuse
from ._errors import error_response
from ._files import client_stream

__all__ = ["FastApp", "forwarded", "is_link", "relay", "relayed"]

_FORWARD = re.compile(rb"^/api/bridges/([a-z0-9][a-z0-9-]{0,62})(/api/.*)$")
# Hop-by-hop headers, and the caller's credentials: the master sends its own.
_HOP = frozenset({
    b"connection", b"keep-alive", b"transfer-encoding", b"te", b"upgrade", b"host",
    b"authorization", b"cookie", b"proxy-authorization", b"x-dxflow-caller",
    b"x-dxflow-caller-permissions", b"x-dxflow-csrf",
})  # fmt: skip
_HELLO_MAX = 64 << 10
_REPLAYABLE = 1 << 20
"""Bodies up to this size are read before a relayed call, so that it can be sent again."""
_LINK = ops.LINK_PATH.encode()


def _broke() -> tuple[type[Exception], ...]:
    import httpcore

    return (httpcore.NetworkError, httpcore.ProtocolError, httpcore.TimeoutException)


_BROKE = _broke()


def relayed(url: bytes) -> bool:
    """Whether a request's URL is a call relayed to an agent (the master's own auth,
    under the same prefix, is not)."""
    found = _FORWARD.match(url.split(b"?", 1)[0])
    return found is not None and not found[2].startswith(b"/api/auth/")


class FastApp:
    """What the server's fast path serves (a lean HTTP/1.1 protocol instead of uvicorn's
    per-request machinery, see `_core/_proxies/_server.py`): proxied requests, and calls
    relayed to agents, whose answers then leave in one write each."""

    def __init__(self, proxies: Any, core: EngineCore) -> None:
        self.proxies, self.core = proxies, core
        self._links: set[asyncio.Task[None]] = set()

    def take_upgrade(self, scope: Scope, proto: Any, rest: bytes) -> bool:
        """The fast path's hook for upgrades: an agent's link is served here."""
        if not is_link(scope.get("raw_path") or b""):
            return False
        _take_link(self.core, scope, proto, rest, self._links)
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and relayed(scope.get("raw_path") or b""):
            await relay(self.core, scope, receive, send)
        else:
            await self.proxies(scope, receive, send)


def forwarded(scope: Scope) -> tuple[str, bytes] | None:
    """(agent, its path) when `scope` asks for an agent's API through this master."""
    raw = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
    root = scope.get("root_path", "").encode()
    if root and raw.startswith(root):  # this app mounted under a prefix: its own paths
        raw = raw[len(root) :]
    found = _FORWARD.match(raw)
    return (found[1].decode(), found[2]) if found else None


# -- the agents' link ---------------------------------------------------------------------


def is_link(url: bytes) -> bool:
    """Whether a request's URL is the agents' link."""
    return url.split(b"?", 1)[0] == _LINK


def _take_link(core: EngineCore, scope: Scope, proto: Any, rest: bytes,
               tasks: set[asyncio.Task[None]]) -> None:  # fmt: skip
    """Speak WebSocket on the connection from now on (see `_bridges._socket`), and serve
    the agent's link on it."""
    problem = handshake_error(scope["headers"])
    if problem is not None:
        body = envelope_bytes(InvalidRequest(f"the link is a WebSocket: {problem}"))
        proto.answer_and_close(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"
                               b"\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
                               % len(body), body)  # fmt: skip
        return
    back = proto.detach()
    socket = accept(proto.transport, scope["headers"], rest)
    if back is not None:  # uvicorn counts the connection until it ends (its shutdown waits)
        socket.lost.add_done_callback(lambda _: back.connection_lost(None))
    task = asyncio.get_running_loop().create_task(_serve_link(core, scope, socket))
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def _serve_link(core: EngineCore, scope: Scope, socket: FrameSocket) -> None:
    try:
        try:
            ctx = context_for(HTTPConnection({**scope, "type": "websocket"}), core, ops.LINK,
                              websocket=True)  # fmt: skip
            async with asyncio.timeout(30):
                first = await socket.recv()  # the agent speaks first: its hello
            if len(first) > _HELLO_MAX:
                raise InvalidRequest(f"the link's hello is over {_HELLO_MAX} bytes")
            try:
                hello = json.loads(first)
            except ValueError:
                raise InvalidRequest("the link's hello is not JSON") from None
            admission = await core.dispatcher.call(ctx, ops.LINK, hello)
        except ApiError as error:  # told as a channel tells it: an error frame, 4000 + status
            with contextlib.suppress(LinkError):
                await socket.send_text(error_frame(error))
            await socket.close(close_code(error), error.code)
            return
        except (LinkError, TimeoutError):
            return
        await socket.send(json.dumps(admission.answer).encode())
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else "unix"
        await core.bridges.serve(ctx, admission, socket, address)
    finally:
        await socket.close()


# -- calls relayed to an agent ------------------------------------------------------------


async def relay(core: EngineCore, scope: Scope, receive: Receive, send: Send) -> None:
    found = forwarded(scope)
    assert found is not None
    name, path = found
    if scope["type"] == "websocket":
        await _relay_socket(core, WebSocket(scope, receive, send), name, path)
    else:
        await _relay_http(core, Request(scope, receive), name, path, send)


async def _admit(core: EngineCore, connection: Any, name: str, path: bytes,
                 method: str) -> tuple[Any, Any]:  # fmt: skip
    websocket = connection.scope["type"] == "websocket"
    ctx = context_for(connection, core, ops.FORWARD, websocket=websocket)
    payload = {"name": name, "path": path.decode("latin-1")[len("/api/") :], "method": method}
    return ctx, await core.dispatcher.call(ctx, ops.FORWARD, payload)


def _headers(raw: list[tuple[bytes, bytes]], extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in raw if k.lower() not in _HOP]
    return kept + [(k.encode(), v.encode()) for k, v in extra.items()]


async def _relay_http(core: EngineCore, request: Request, name: str, path: bytes,
                      send: Send) -> None:  # fmt: skip
    query = request.scope.get("query_string", b"")
    url = b"http://agent" + path + (b"?" + query if query else b"")
    try:
        ctx, forwarder = await _admit(core, request, name, path, request.method)
        reply = await _ask_agent(forwarder, ctx, request, url)
    except ApiError as error:
        await error_response(error)(request.scope, request.receive, send)
        return
    except _BROKE as exc:
        broke = EngineUnavailable(f"the link to the agent {name!r} broke: {exc}", bridge=name)
        await error_response(broke)(request.scope, request.receive, send)
        return
    try:
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": _headers(reply.headers, {})})  # fmt: skip
        held = b""  # one chunk behind: the last one goes with more_body=False, in one write
        async for chunk in reply.aiter_stream():
            if held:
                await send({"type": "http.response.body", "body": held, "more_body": True})
            held = chunk
        await send({"type": "http.response.body", "body": held, "more_body": False})
    except _BROKE:
        pass  # the agent's answer broke after its head: the client sees a short body
    finally:
        await reply.aclose()


async def _ask_agent(forwarder: Any, ctx: Any, request: Request, url: bytes) -> Any:
    """The agent's answer (its head; the body still to read). A request whose body is
    held (none, or a small one read first) is sent once more on a fresh connection when
    a pooled one closed before answering (the agent's keep-alive ran out while the
    request was on its way: a lossy link delays it by seconds; as Go's net/http does
    for `errServerClosedIdle`, the agent never read it), and when the master's token on
    the agent is refused (the agent restarted, or the token expired)."""
    import httpcore  # the pool's own API: httpx's client layers cost a fifth of a relay

    headers = request.headers
    has_body = headers.get("content-length", "0") != "0" or "transfer-encoding" in headers
    body: bytes | None = None
    length = headers.get("content-length", "")
    if has_body and length.isdigit() and int(length) <= _REPLAYABLE:
        body = await _read_body(request)
    replayable = not has_body or body is not None
    renewed = resent = False
    while True:
        sent = _headers(headers.raw, await forwarder.headers(ctx, renewed))
        sent.append((b"host", b"agent"))
        if has_body and "content-length" not in headers:
            sent.append((b"transfer-encoding", b"chunked"))  # h11 frames it anew
        content = body if body is not None else client_stream(request) if has_body else None
        try:
            reply = await forwarder.pool.handle_async_request(httpcore.Request(
                request.method, url, headers=sent, content=content,
                extensions={"timeout": {"connect": 30.0}},
            ))  # fmt: skip
        except httpcore.RemoteProtocolError as exc:
            if not replayable or resent or "without sending a response" not in str(exc):
                raise
            resent = True
            continue
        if reply.status != 401 or not replayable or renewed:
            return reply
        await reply.aclose()
        renewed = True


async def _read_body(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect:
        raise InvalidRequest("the client disconnected before the body was complete") from None


async def _relay_socket(core: EngineCore, websocket: WebSocket, name: str, path: bytes) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    query = "&".join(f"{k}={v}" for k, v in websocket.query_params.multi_items() if k != "token")
    try:
        ctx, forwarder = await _admit(core, websocket, name, path, "GET")
        sock = await forwarder.socket()
        uri = "ws://agent" + path.decode("latin-1") + ("?" + query if query else "")
        headers = await forwarder.headers(ctx)
        agent = await connect(uri, sock=sock, additional_headers=headers, max_size=16 << 20,
                              compression=None, ping_interval=None, open_timeout=30)  # fmt: skip
    except ApiError as error:
        await _refuse(websocket, error)
        return
    except InvalidStatus as refused:
        reply = refused.response
        await _refuse(websocket, error_from_reply(reply.status_code, bytes(reply.body or b""),
                                                  reply.reason_phrase))  # fmt: skip
        return
    except (OSError, TimeoutError) as exc:
        await _refuse(websocket, EngineUnavailable(f"the agent {name!r}: {exc}", bridge=name))
        return
    await websocket.accept()
    async with agent:
        to_agent = asyncio.ensure_future(_to_agent(websocket, agent))
        try:
            async for message in agent:
                if isinstance(message, bytes):
                    await websocket.send_bytes(message)
                else:
                    await websocket.send_text(message)
        except ConnectionClosed:
            pass
        finally:
            to_agent.cancel()
        code = agent.close_code or 1000
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=agent.close_reason or "")


async def _to_agent(websocket: WebSocket, agent: Any) -> None:
    with contextlib.suppress(Exception):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                await agent.close()
                return
            data = message.get("bytes")
            await agent.send(data if data is not None else message.get("text", ""))
