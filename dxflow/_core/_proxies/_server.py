"""The fast path: proxied HTTP requests served by a lean protocol, not through uvicorn.

uvicorn's per-request costs (an ASGI cycle, header validation, a write for the head and
another for the body) are half of what a proxied small request costs. So a connection
whose request is a proxy's (`/p/...` on the engine's listener; any on a proxy's own
port) is *handed over* by the uvicorn protocol that accepted it to `FastProtocol`:
httptools parses the requests, `ProxyApp.serve` handles them through minimal
`receive`/`send` callables, and an answer's head and body leave in one write.

Whatever the fast path does not do goes *back* to the uvicorn protocol, with the bytes
of its request: a WebSocket upgrade (uvicorn's WebSocket protocol and `_ws` relay it),
and, on the engine's listener, a request for the API on a connection a browser reuses.
Both hand-overs happen only at a request's first byte, where either parser is idle.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

import httptools

from dxflow._limits import MAX_HEAD

__all__ = ["FastProtocol", "hand_over", "idle", "wants_proxy"]

log = logging.getLogger("dxflow.proxies")

HEADER_TIMEOUT = 10.0
KEEP_ALIVE = 30.0
BODY_HIGH_WATER = 1 << 20
_SMALL = 64 << 10
_STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}
_DISCONNECT = {"type": "http.disconnect"}
_RARE = frozenset({b"upgrade", b"expect"})


def wants_proxy(data: bytes) -> bool:
    """Whether `data`, a request's first bytes, asks for a path under `/p/`."""
    space = data.find(b" ", 0, 16)
    return space > 0 and data.startswith(b"/p/", space + 1)


def idle(back: Any) -> bool:
    """Whether uvicorn's protocol `back` is between requests (its parser at a boundary),
    and was not just given a request the fast path declined."""
    if getattr(back, "fast_declined", False):
        back.fast_declined = False
        return False
    cycle = back.cycle
    return cycle is None or (cycle.response_complete and not cycle.more_body)


def hand_over(
    back: Any,
    transport: Any,
    data: bytes,
    app: Any,
    claims: Callable[[bytes], bool],
) -> None:
    """Give `transport` (uvicorn's protocol `back`'s, idle between requests) to a new
    `FastProtocol`, which parses `data` as the start of its first request."""
    back._unset_keepalive_if_required()  # uvicorn's idle timer: the connection is not
    fast = FastProtocol(app, back, claims, back.scheme)
    transport.set_protocol(fast)
    fast.connection_made(transport)
    fast.data_received(data)


def _upgrade(headers: list[tuple[bytes, bytes]]) -> bool:
    """llhttp's rule (its flag is set only after this callback): an Upgrade header and
    `upgrade` among the Connection header's tokens."""
    upgrade = connection = False
    for name, value in headers:
        if name == b"upgrade":
            upgrade = True
        elif name == b"connection" and b"upgrade" in value.lower():
            connection = True
    return upgrade and connection


class _HandBack(Exception):
    pass


class _HeadTooLarge(Exception):
    pass


class Cycle:
    """One request and its answer: the `receive` and `send` of `ProxyApp.serve`."""

    __slots__ = (
        "body",
        "buffered",
        "chunked",
        "complete",
        "continue_",
        "discard",
        "done",
        "final",
        "head",
        "keep_alive",
        "method",
        "proto",
        "scope",
        "started",
        "waiter",
    )

    def __init__(self, proto: FastProtocol, scope: dict[str, Any], keep_alive: bool) -> None:
        self.proto = proto
        self.scope = scope
        self.method: str = scope["method"]
        self.keep_alive = keep_alive
        self.body: deque[bytes] = deque()
        self.buffered = 0
        self.complete = False  # the request's body is all in
        self.final = False  # the last body message was given out
        self.discard = False
        self.started = False
        self.done = False
        self.chunked = False
        self.head = b""
        self.continue_ = False
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        proto = self.proto
        while True:
            if self.body:
                data = self.body.popleft() if len(self.body) == 1 else b"".join(self.body)
                self.body.clear()
                self.buffered = 0
                proto.resume()
                return {"type": "http.request", "body": data, "more_body": not self.complete}
            if self.complete and not self.final:
                self.final = True
                return {"type": "http.request", "body": b"", "more_body": False}
            if proto.closed or self.done:
                return _DISCONNECT
            if self.continue_ and not self.started:
                self.continue_ = False
                proto.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if self.final:  # all read: what is left to wait for is the client leaving
                proto.resume()
            self.waiter = proto.loop.create_future()
            await self.waiter

    async def send(self, message: dict[str, Any]) -> None:
        proto = self.proto
        if proto.closed or self.done:
            return
        if message["type"] == "http.response.start":
            self._start(message["status"], message.get("headers", ()))
            return
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self.method == "HEAD":
            body = b""
        transport = proto.transport
        if self.chunked:
            if body:
                size = b"%x\r\n" % len(body)
                if len(body) > _SMALL:
                    transport.writelines([self.head, size, body, b"\r\n"])
                    self.head = b""
                    body = b""
                else:
                    body = size + body + b"\r\n"
            if not more:
                body += b"0\r\n\r\n"
        head = self.head
        if head:
            self.head = b""
            if len(body) <= _SMALL:
                transport.write(head + body)
            else:
                transport.writelines([head, body])
        elif body:
            transport.write(body)
        if not more:
            self.done = True
            proto.finished(self)
        elif proto.write_paused:
            await proto.drain()

    def _start(self, status: int, headers: Any) -> None:
        self.started = True
        parts = [_STATUS.get(status) or b"HTTP/1.1 %d \r\n" % status]
        length = False
        for name, value in headers:
            if name == b"content-length":
                length = True
            elif name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
                continue
            parts += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
        if not length and self.method != "HEAD" and status not in (204, 304) and status >= 200:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        parts.append(b"\r\n")
        self.head = b"".join(parts)


class FastProtocol(asyncio.Protocol):
    """HTTP/1.1 for proxied requests on a connection handed over by uvicorn."""

    def __init__(self, app: Any, back: Any, claims: Callable[[bytes], bool], scheme: str) -> None:
        self.app = app
        self.back = back
        self.claims = claims
        self.scheme = scheme
        self.loop = asyncio.get_running_loop()
        self.parser = httptools.HttpRequestParser(self)
        self.transport: Any = None
        self.client: tuple[str, int] | None = None
        self.closed = False
        self.write_paused = False
        self.reading_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self.parsing: Cycle | None = None  # the request being read
        self.active: Cycle | None = None  # the request being answered
        self.queue: deque[Cycle] = deque()  # pipelined requests, in order
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._rare = False  # an Upgrade or Expect header: checked for when complete
        self._first: list[bytes] = []  # the bytes of the request begun at a chunk's start
        self._in_message = False
        self._upgrading = False
        self._upgrade_scope: dict[str, Any] | None = None
        self._early: list[bytes] | None = None  # what a client sends while its tunnel opens
        self.tunnel: Any = None
        self.tunneling = False

    # -- transport -----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client = (peer[0], peer[1]) if isinstance(peer, tuple) else None
        self._arm(HEADER_TIMEOUT)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
        for cycle in (self.active, *self.queue):
            if cycle is not None:
                cycle.wake()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        if self.tunnel is not None:
            self.tunnel.lost()
        if self.back is not None:
            self.back.connection_lost(exc)  # uvicorn forgets the connection too

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.from_client(data)
            return
        if self._early is not None:  # a tunnel being opened: its bytes wait
            self._early.append(data)
            return
        if not self._in_message:
            self._first = [data]
        elif self._first:
            self._first.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data[exc.args[0] :])
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HandBack):
                self._hand_back()
            else:
                self._bad_request()
        except httptools.HttpParserError:
            self._bad_request()

    def _upgrade(self, rest: bytes) -> None:
        """An upgrade (WebSocket) for a proxy: a tunnel to its target, bytes both ways
        (uvicorn's, for what the app does not know: its 404)."""
        scope = self._upgrade_scope
        take = getattr(self.app, "take_upgrade", None)  # an app that serves some itself
        if (
            scope is not None
            and take is not None
            and self.active is None
            and take(scope, self, rest)
        ):
            return
        resolve = getattr(self.app, "resolve", None)  # a ProxyApp (tests serve other apps)
        if scope is None or resolve is None or self.active is not None:
            self._hand_back()
            return
        found = resolve(scope)
        if found is None or found[0] is None:
            self._hand_back()
            return
        from ._ws import tunnel

        self._disarm()
        self._early = [rest] if rest else []
        self.tunneling = True  # busy: no timer closes it
        self.transport.pause_reading()  # until the target has answered
        self.loop.create_task(tunnel(self.app, found[0], found[1], scope, self))

    def detach(self) -> Any:
        """The app took the connection over (`take_upgrade`): no timer of ours runs on it
        any more. Returns uvicorn's protocol, which must be told when it ends."""
        self._disarm()
        if self._timer is not None:
            self._timer.cancel()
        self.closed = True
        back, self.back = self.back, None
        return back

    def answer_and_close(self, head: bytes, body: bytes = b"") -> None:
        """A raw answer (to an upgrade that gets no tunnel), then the connection's end."""
        if not self.closed:
            self.transport.write(head + body)
            self.transport.close()

    def _hand_back(self) -> None:
        """The request is one for uvicorn: give it the connection and the bytes."""
        data = b"".join(self._first)
        if self.back is None or not data or self.active is not None or self.queue:
            self._bad_request()
            return
        self._disarm()
        back, self.back = self.back, None
        back.fast_declined = True
        self.transport.set_protocol(back)
        back.data_received(data)

    def _bad_request(self) -> None:
        if not self.closed and not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            self.transport.close()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.tunnel is not None:
            self.tunnel.target.pause_reading()  # the client is slow: so is the target

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.tunnel is not None:
            self.tunnel.target.resume_reading()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)

    async def drain(self) -> None:
        if self.write_paused and not self.closed:
            self._drain = self.loop.create_future()
            await self._drain

    def resume(self) -> None:
        if self.reading_paused and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    # One timer per connection, pushed forward lazily: re-arming a timer per request
    # costs more than the check when it fires.
    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.time() + seconds
        if self._timer is None:
            self._timer = self.loop.call_later(seconds, self._expire)

    def _disarm(self) -> None:
        self._deadline = None

    def _expire(self) -> None:
        self._timer = None
        deadline = self._deadline
        if deadline is None or self.closed:
            return
        left = deadline - self.loop.time()
        if left > 0:
            self._timer = self.loop.call_later(left, self._expire)
        elif self.active is None and not self.tunneling and not self.transport.is_closing():
            self.transport.close()

    # -- httptools callbacks ----------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._in_message or len(self._first) != 1:
            self._first = []  # begun mid-chunk (pipelined): never handed back
        self._in_message = True
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._rare = False
        if self.active is None:
            self._arm(HEADER_TIMEOUT)

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            raise _HeadTooLarge
        if not self.claims(self._url):
            raise _HandBack

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._head_size > MAX_HEAD:
            raise _HeadTooLarge
        name = name.lower()
        if name in _RARE:
            self._rare = True
        self._headers.append((name, value.rstrip(b" \t")))

    def on_headers_complete(self) -> None:
        parser = self.parser
        scope = self._scope()
        rare = self._rare
        if rare and _upgrade(self._headers):
            self._upgrading = True
            self._upgrade_scope = scope
            return  # feed_data raises HttpParserUpgrade, next: a tunnel, or uvicorn's
        self._first = []  # no hand-back now: never keep a body's bytes
        if self.active is None:
            self._disarm()
        cycle = Cycle(self, scope, parser.should_keep_alive())
        if rare:
            for name, value in self._headers:
                if name == b"expect" and value.lower() == b"100-continue":
                    cycle.continue_ = True
        self.parsing = cycle
        if self.active is None:
            self._start(cycle)
        else:
            self.queue.append(cycle)

    def _scope(self) -> dict[str, Any]:
        parser = self.parser
        url = httptools.parse_url(self._url)
        raw_path: bytes = url.path
        path = raw_path.decode("ascii", "replace")
        scope = {
            "type": "http",
            "http_version": parser.get_http_version(),
            "method": parser.get_method().decode("ascii"),
            "scheme": self.scheme,
            "path": unquote(path) if "%" in path else path,
            "raw_path": raw_path,
            "query_string": url.query or b"",
            "headers": self._headers,
            "client": self.client,
            "server_date": False,  # no Date of its own: the target's passes
        }
        return scope

    def on_body(self, body: bytes) -> None:
        cycle = self.parsing
        if cycle is None or cycle.discard:
            return
        cycle.body.append(body)
        cycle.buffered += len(body)
        if cycle.buffered > BODY_HIGH_WATER and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        cycle.wake()

    def on_message_complete(self) -> None:
        if self._upgrading:
            return  # feed_data raises HttpParserUpgrade, next: `_first` is handed back
        self._in_message = False
        self._first = []
        cycle = self.parsing
        if cycle is not None:
            cycle.complete = True
            cycle.wake()
            self.parsing = None

    # -- requests -----------------------------------------------------------------------------

    def _start(self, cycle: Cycle) -> None:
        self.active = cycle
        self.loop.create_task(self._run(cycle))

    async def _run(self, cycle: Cycle) -> None:
        try:
            await self.app(cycle.scope, cycle.receive, cycle.send)
        except asyncio.CancelledError:  # its proxy was removed: the connection ends
            if not self.closed:
                self.transport.close()
            return
        except Exception:
            log.exception("proxied request %s %s failed", cycle.method, cycle.scope["path"])
            if not cycle.started and not self.closed:
                await cycle.send(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-length", b"0"), (b"connection", b"close")],
                    }
                )
                await cycle.send({"type": "http.response.body", "body": b""})
        if not cycle.done and not self.closed:
            self.transport.close()  # the answer is cut short: so is the connection

    def finished(self, cycle: Cycle) -> None:
        """`cycle`'s answer is all written: the next request, or wait for one."""
        self.active = None
        if cycle is self.parsing:
            cycle.discard = True  # its body was not read: what is left is dropped
        if not cycle.keep_alive:
            self.transport.close()
            return
        self.resume()
        if self.queue:
            self._start(self.queue.popleft())
        elif not self._in_message:
            self._arm(KEEP_ALIVE)
