"""The bridge link: many byte streams multiplexed over one WebSocket, with flow control.

The agent dials one WebSocket to the master; over it the master opens streams (OPEN with a
target dict, answered by ACCEPT or RESET), and bytes flow both ways as DATA frames of at most
64 KiB. Every WebSocket binary message is one frame, a `struct.pack("!BI", type, stream_id)`
header then the payload (the full table is in `_frames.py`): HELLO 0, OPEN 1, ACCEPT 2,
DATA 3, END 4 (half close), RESET 5 (UTF-8 reason), CREDIT 6 (`!I`), PING 7 (`!d` clock),
PONG 8 (the echoed 8 bytes, then optional JSON facts). The master opens odd stream ids.

Flow control: each direction of a stream has a window; a writer never has more DATA in
flight than the receiver granted (its window at first, announced once per link by a CREDIT
on stream 0, then CREDIT frames as the application reads). Buffered bytes per stream are
thus bounded by the window, and a slow reader stalls only its own stream.

Fairness: frames leave through one gate. Control frames join a queue that whoever holds
the gate sends first, so a PING or CREDIT waits for at most one DATA frame, never for
another stream's backlog. The read loop never waits on the carrier (it only queues), so
two peers that both write flat out cannot deadlock each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal, Protocol

from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from ._frames import (
    ACCEPT,
    CLOCK,
    CREDIT,
    DATA,
    END,
    HELLO,
    MAX_DATA,
    OPEN,
    PING,
    PONG,
    RESET,
    U32,
    FrameError,
    decode,
    encode,
    encode_json,
    json_object,
    u32,
)

if TYPE_CHECKING:
    from starlette.websockets import WebSocket
    from websockets.asyncio.client import ClientConnection

log = logging.getLogger(__name__)


class LinkError(Exception):
    """The link is gone or broken; `str()` says why. `clean`: closed on purpose."""

    def __init__(self, message: str = "link closed", *, clean: bool = False) -> None:
        super().__init__(message)
        self.clean = clean


class StreamReset(Exception):
    """The stream was reset (by the other side, or it refused the OPEN)."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason or "stream reset")
        self.reason = reason


class Carrier(Protocol):
    """One message-oriented connection (a WebSocket)."""

    async def send(self, data: bytes) -> None: ...
    async def recv(self) -> bytes: ...
    async def close(self) -> None: ...


# -- carriers -------------------------------------------------------------------------------


class _MemoryCarrier:
    def __init__(self) -> None:
        self._inbox: asyncio.Queue[bytes | LinkError] = asyncio.Queue()
        self._closed: LinkError | None = None
        self.peer: _MemoryCarrier = self

    async def send(self, data: bytes) -> None:
        closed = self._closed or self.peer._closed
        if closed is not None:
            raise LinkError(str(closed), clean=closed.clean)
        self.peer._inbox.put_nowait(bytes(data))
        # A socket would yield now and then: without it one writer could starve the loop.
        await asyncio.sleep(0)

    async def recv(self) -> bytes:
        if self._closed is not None:
            raise LinkError(str(self._closed), clean=self._closed.clean)
        item = await self._inbox.get()
        if isinstance(item, LinkError):
            self._closed = self._closed or item
            raise LinkError(str(item), clean=item.clean)
        return item

    async def close(self) -> None:
        self.abort("connection closed", clean=True)

    def abort(self, reason: str = "connection lost", *, clean: bool = False) -> None:
        """Ends both carriers; `clean=False` models a dropped connection."""
        if self._closed is None:
            self._closed = LinkError(reason, clean=clean)
            self._inbox.put_nowait(self._closed)
            self.peer._inbox.put_nowait(LinkError(f"{reason} (by the peer)", clean=clean))


def memory_pair() -> tuple[Carrier, Carrier]:
    """Two connected in-memory carriers, for tests."""
    one, two = _MemoryCarrier(), _MemoryCarrier()
    one.peer, two.peer = two, one
    return one, two


class _StarletteCarrier:
    def __init__(self, ws: WebSocket) -> None:
        self._ws = ws

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send_bytes(data)
        except Exception as exc:
            raise LinkError(f"WebSocket send failed: {exc!r}") from exc

    async def recv(self) -> bytes:
        try:
            message = await self._ws.receive()
        except Exception as exc:
            raise LinkError(f"WebSocket receive failed: {exc!r}") from exc
        if message["type"] == "websocket.disconnect":
            code = message.get("code", 1005)
            raise LinkError(f"WebSocket closed ({code})", clean=code in (1000, 1001))
        data = message.get("bytes")
        if data is None:
            raise LinkError("malformed frame: a text message")
        return bytes(data)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._ws.close()


def starlette_carrier(ws: WebSocket) -> Carrier:
    """The master side: a Starlette WebSocket, already accepted."""
    return _StarletteCarrier(ws)


class _WebsocketsCarrier:
    def __init__(self, conn: ClientConnection) -> None:
        self._conn = conn

    async def send(self, data: bytes) -> None:
        try:
            await self._conn.send(data)
        except ConnectionClosed as exc:
            raise LinkError(str(exc), clean=isinstance(exc, ConnectionClosedOK)) from exc

    async def recv(self) -> bytes:
        try:
            message = await self._conn.recv()
        except ConnectionClosed as exc:
            raise LinkError(str(exc), clean=isinstance(exc, ConnectionClosedOK)) from exc
        if isinstance(message, str):
            raise LinkError("malformed frame: a text message")
        return message

    async def close(self) -> None:
        await self._conn.close()


def websockets_carrier(conn: ClientConnection) -> Carrier:
    """The agent side: a `websockets` client connection."""
    return _WebsocketsCarrier(conn)


# -- streams --------------------------------------------------------------------------------


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Stream:
    """One byte stream of a link. One task reads and one task writes at a time."""

    def __init__(self, link: Link, stream_id: int, credit: int) -> None:
        self.id = stream_id
        self._link = link
        self._batch = max(1, link._window >> 2)
        self._allowance = link._window  # what the peer may still send before our next CREDIT
        self._consumed = 0  # read since our last CREDIT
        self._credit = credit  # what we may still send
        self._chunks: deque[memoryview] = deque()
        self._eof = False  # the peer sent END
        self._ended = False  # we sent END
        self._discard = False  # aclose(): nobody reads any more
        self._accepted = False
        self._error: Exception | None = None
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._opened: asyncio.Future[None] | None = None

    async def accept(self) -> None:
        """Agent side, in `on_open`: the local target is connected; bytes may flow."""
        self._raise()
        if not self._accepted:
            self._accepted = True
            await self._link._control(encode(ACCEPT, self.id))

    async def read(self, max_bytes: int = 1 << 16) -> bytes:
        """Up to `max_bytes`; b"" once the peer sent END."""
        while not self._chunks:
            if self._eof:
                return b""
            self._raise()
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        chunk = self._chunks[0]
        if len(chunk) <= max_bytes:
            self._chunks.popleft()
        else:
            self._chunks[0] = chunk[max_bytes:]
            chunk = chunk[:max_bytes]
        self._consumed += len(chunk)
        if self._consumed >= self._batch:
            self._grant()
        return bytes(chunk)

    async def write(self, data: bytes | memoryview) -> None:
        """Waits for credit; the peer holds at most its window of our bytes unread."""
        view = memoryview(data)
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        offset, total = 0, len(view)
        while offset < total:
            self._raise()
            if self._ended:
                raise RuntimeError(f"write on stream {self.id} after its end()")
            if self._credit <= 0:
                self._writer = asyncio.get_running_loop().create_future()
                try:
                    await self._writer
                finally:
                    self._writer = None
                continue
            size = min(total - offset, MAX_DATA, self._credit)
            self._credit -= size
            await self._link._send_data(encode(DATA, self.id, view[offset : offset + size]))
            offset += size

    async def end(self) -> None:
        """Half close: no more data from this side (sends END once)."""
        if self._ended:
            return
        self._raise()
        self._ended = True
        if self._eof:
            self._link._forget(self)
        await self._link._control(encode(END, self.id))

    async def reset(self, reason: str = "") -> None:
        """Aborts both directions; the peer's reads and writes raise StreamReset(reason)."""
        if self._error is not None or self._link._streams.get(self.id) is not self:
            return
        self._abort(reason)
        with contextlib.suppress(LinkError):
            await self._link._control(encode(RESET, self.id, reason.encode()))

    async def aclose(self) -> None:
        """Ends our side; the stream is forgotten once the peer's side ended too."""
        self._discard = True
        self._consumed += sum(len(chunk) for chunk in self._chunks)
        self._chunks.clear()
        if self._consumed and not self._eof:
            # Unread bytes are dropped, not left unacknowledged: the peer can reach its END.
            self._grant()
        with contextlib.suppress(Exception):
            await self.end()
        if self._eof or self._error is not None:
            self._link._forget(self)

    # -- called by the link -----------------------------------------------------------------

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)

    def _grant(self) -> None:
        grant, self._consumed = self._consumed, 0
        self._allowance += grant
        if not self._eof and self._error is None:
            self._link._post(encode(CREDIT, self.id, U32.pack(grant)))

    def _received(self, payload: memoryview) -> None:
        size = len(payload)
        if self._eof:
            self._link._reset_now(self, "DATA after END")
        elif size > self._allowance:
            self._link._reset_now(self, "flow control violated")
        elif self._discard:
            self._allowance -= size
            self._consumed += size
            if self._consumed >= self._batch:
                self._grant()
        else:
            self._allowance -= size
            self._chunks.append(payload)
            _wake(self._reader)

    def _abort(self, reason: str) -> None:
        self._fail(StreamReset(reason))
        self._link._forget(self)

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
            if not self._eof:  # after the peer's END the bytes are complete: still readable
                self._chunks.clear()
        _wake(self._reader)
        _wake(self._writer)
        _wake(self._opened)


# -- the link -------------------------------------------------------------------------------


class Link:
    """One carrier, many streams. Call `run()` (in a task) for the link's lifetime."""

    def __init__(
        self,
        carrier: Carrier,
        *,
        side: Literal["master", "agent"],
        on_open: Callable[[Stream, dict[str, Any]], Awaitable[None]] | None = None,
        interval: float = 5.0,
        window: int = 1 << 20,
        facts: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if window < 1 or window >= 1 << 32:
            raise ValueError(f"window of {window} bytes: must fit 1..2**32-1")
        self.side = side
        self._carrier = carrier
        self._on_open = on_open
        self._interval = interval
        self._window = window
        self._peer_window = window  # until the peer announces its own
        self._facts = facts
        self._clock = clock
        self._peer = "agent" if side == "master" else "master"
        self._next_id = 1 if side == "master" else 2
        self._peer_last_id = 0
        self._streams: dict[int, Stream] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        # The send gate: `_busy` while one task sends; `_queue` holds control frames the
        # holder sends first; `_turns` are DATA writers waiting for the gate, in order.
        self._busy = False
        self._queue: deque[bytes] = deque()
        self._turns: deque[asyncio.Future[None]] = deque()
        self._flush = asyncio.Event()
        self._announced = False
        self._running = False
        self._end: LinkError | None = None
        self._ended = asyncio.Event()
        self.last_seen: float = clock()
        self.rtt: float | None = None
        self.peer_facts: dict[str, Any] = {}
        self.hello: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        return self._end is not None

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    async def run(self) -> None:
        """Reads frames until the carrier closes; raises LinkError unless the close was clean."""
        if self._running:
            raise RuntimeError("the link is already running")
        self._running = True
        tasks = [
            asyncio.create_task(self._read_frames()),
            asyncio.create_task(self._flush_queue()),
            asyncio.create_task(self._heartbeat()),
        ]
        try:
            with contextlib.suppress(LinkError):
                await self._announce()
            await self._ended.wait()
        finally:
            self._stop(LinkError("the link's run() was cancelled"))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._shutdown()
            with contextlib.suppress(Exception):
                await self._carrier.close()
            handlers = [task for task in self._handlers if task is not asyncio.current_task()]
            await asyncio.gather(*handlers, return_exceptions=True)
        assert self._end is not None
        if not self._end.clean:
            raise self._end

    async def open(self, target: dict[str, Any], timeout: float = 10.0) -> Stream:  # noqa: ASYNC109
        """A new stream to `target`, once the peer accepted it (StreamReset if refused)."""
        self._check()
        # No credit before ACCEPT: the peer's window announcement may still be on its way.
        stream = Stream(self, self._next_id, 0)
        self._next_id += 2
        stream._opened = asyncio.get_running_loop().create_future()
        self._streams[stream.id] = stream
        try:
            await self._announce()
            await self._control(encode_json(OPEN, stream.id, target))
            async with asyncio.timeout(timeout):
                await stream._opened
        except BaseException:
            if stream._error is None and not self.closed:
                self._reset_now(stream, "the opener gave up")
            raise
        stream._raise()
        return stream

    async def send_hello(self, payload: dict[str, Any]) -> None:
        self._check()
        await self._control(encode_json(HELLO, 0, payload))

    async def close(self, reason: str = "") -> None:
        """Closes the link; every stream fails with LinkError(reason)."""
        self._stop(LinkError(reason or "link closed", clean=True))
        self._shutdown()
        with contextlib.suppress(Exception):
            await self._carrier.close()

    # -- sending --------------------------------------------------------------------------

    def _check(self) -> None:
        if self._end is not None:
            raise LinkError(str(self._end), clean=self._end.clean)

    async def _send(self, frame: bytes) -> None:
        self._check()
        try:
            await self._carrier.send(frame)
        except LinkError as exc:
            self._stop(exc)
            raise
        except Exception as exc:
            error = LinkError(f"the carrier failed to send: {exc!r}")
            self._stop(error)
            raise error from exc

    async def _drain(self) -> None:
        while self._queue:
            await self._send(self._queue.popleft())

    def _release(self) -> None:
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_result(None)  # the gate passes on: `_busy` stays set
                return
        self._busy = False
        if self._queue:
            self._flush.set()

    async def _control(self, frame: bytes) -> None:
        """A control frame: ahead of every DATA frame not yet on its way."""
        self._queue.append(frame)
        if not self._busy:
            self._busy = True
            try:
                await self._drain()
            finally:
                self._release()

    def _post(self, frame: bytes) -> None:
        """`_control` for the read loop, which must not wait on the carrier."""
        self._queue.append(frame)
        if not self._busy:
            self._flush.set()

    async def _send_data(self, frame: bytes) -> None:
        if self._busy:
            turn = asyncio.get_running_loop().create_future()
            self._turns.append(turn)
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled() and turn.exception() is None:
                    self._release()  # handed the gate while being cancelled
                raise
        else:
            self._busy = True
        try:
            await self._drain()
            await self._send(frame)
        finally:
            self._release()

    async def _flush_queue(self) -> None:
        while True:
            await self._flush.wait()
            self._flush.clear()
            if self._busy or not self._queue:
                continue
            self._busy = True
            try:
                await self._drain()
            except LinkError:
                return
            finally:
                self._release()

    async def _announce(self) -> None:
        if not self._announced:
            self._announced = True
            await self._control(encode(CREDIT, 0, U32.pack(self._window)))

    # -- receiving ------------------------------------------------------------------------

    async def _read_frames(self) -> None:
        streams = self._streams
        try:
            while True:
                message = await self._carrier.recv()
                self.last_seen = self._clock()
                kind, stream_id, payload = decode(message)
                if kind == DATA:
                    stream = streams.get(stream_id)
                    if stream is not None:  # else reset or forgotten: its bytes in flight drop
                        stream._received(payload)
                else:
                    self._handle(kind, stream_id, payload)
        except FrameError as exc:
            self._stop(LinkError(f"malformed frame: {exc}"))
        except LinkError as exc:
            self._stop(exc)
        except Exception as exc:
            log.exception("bridge link: reading frames failed")
            self._stop(LinkError(f"reading frames failed: {exc!r}"))

    def _handle(self, kind: int, stream_id: int, payload: memoryview) -> None:
        if kind == CREDIT:
            grant = u32(kind, payload)
            if stream_id == 0:
                self._peer_window = grant
            elif (stream := self._streams.get(stream_id)) is not None:
                stream._credit += grant
                _wake(stream._writer)
        elif kind == END:
            if (stream := self._streams.get(stream_id)) is not None:
                stream._eof = True
                if stream._ended:
                    self._forget(stream)
                _wake(stream._reader)
        elif kind == ACCEPT:
            stream = self._streams.get(stream_id)
            if stream is not None and stream._opened is not None and not stream._accepted:
                stream._accepted = True
                stream._credit += self._peer_window
                _wake(stream._opened)
        elif kind == RESET:
            if (stream := self._streams.get(stream_id)) is not None:
                stream._abort(bytes(payload).decode(errors="replace"))
        elif kind == OPEN:
            self._opened_by_peer(stream_id, json_object(kind, payload))
        elif kind == PING:
            if len(payload) != CLOCK.size:
                raise FrameError(f"PING payload of {len(payload)} bytes, not 8")
            self._post(encode(PONG, 0, bytes(payload) + self._facts_json()))
        elif kind == PONG:
            if len(payload) < CLOCK.size:
                raise FrameError(f"PONG payload of {len(payload)} bytes, under 8")
            self.rtt = max(0.0, self._clock() - CLOCK.unpack(payload[: CLOCK.size])[0])
            if len(payload) > CLOCK.size:
                self.peer_facts = json_object(kind, payload[CLOCK.size :])
        elif kind == HELLO:
            self.hello = json_object(kind, payload)

    def _facts_json(self) -> bytes:
        if self._facts is None:
            return b""
        try:
            return json.dumps(self._facts(), separators=(",", ":")).encode()
        except Exception:
            log.exception("bridge link: the facts for a PONG failed")
            return b""

    def _opened_by_peer(self, stream_id: int, target: dict[str, Any]) -> None:
        parity = 0 if self.side == "master" else 1
        if stream_id % 2 != parity:
            raise FrameError(f"OPEN of stream {stream_id}: not the {self._peer}'s to open")
        if stream_id <= self._peer_last_id:
            raise FrameError(f"OPEN of stream {stream_id} again")
        self._peer_last_id = stream_id
        if self._on_open is None:
            self._post(encode(RESET, stream_id, b"this side accepts no streams"))
            return
        stream = Stream(self, stream_id, self._peer_window)
        self._streams[stream_id] = stream
        task = asyncio.create_task(self._serve(self._on_open, stream, target))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(
        self,
        on_open: Callable[[Stream, dict[str, Any]], Awaitable[None]],
        stream: Stream,
        target: dict[str, Any],
    ) -> None:
        try:
            await on_open(stream, target)
        except Exception as exc:
            if stream._accepted and not isinstance(exc, StreamReset | LinkError):
                log.warning("bridge link: stream %d failed: %r", stream.id, exc)
            await stream.reset(str(exc) or type(exc).__name__)
            return
        if not stream._accepted:
            await stream.reset("the target was not accepted")

    async def _heartbeat(self) -> None:
        limit = 3 * self._interval
        while True:
            if self.side == "master":
                self._post(encode(PING, 0, CLOCK.pack(self._clock())))
            await asyncio.sleep(self._interval)
            silent = self._clock() - self.last_seen
            if silent > limit:
                self._stop(LinkError(f"no heartbeat from the {self._peer} for {silent:.3g} s"))
                return

    # -- ending ---------------------------------------------------------------------------

    def _forget(self, stream: Stream) -> None:
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    def _reset_now(self, stream: Stream, reason: str) -> None:
        stream._abort(reason)
        self._post(encode(RESET, stream.id, reason.encode()))

    def _stop(self, error: LinkError) -> None:
        if self._end is None:
            self._end = error
            self._ended.set()

    def _shutdown(self) -> None:
        assert self._end is not None
        end = self._end
        streams, self._streams = list(self._streams.values()), {}
        for stream in streams:
            stream._fail(LinkError(str(end), clean=end.clean))
        while self._turns:
            turn = self._turns.popleft()
            if not turn.done():
                turn.set_exception(LinkError(str(end), clean=end.clean))
        for task in self._handlers:
            task.cancel()


async def splice(
    stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Bytes both ways until both directions ended; a reset or error ends both."""

    async def outbound() -> None:
        while data := await reader.read(MAX_DATA):
            await stream.write(data)
        await stream.end()

    async def inbound() -> None:
        while data := await stream.read():
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    tasks = [asyncio.create_task(outbound()), asyncio.create_task(inbound())]
    failure: BaseException | None = None
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError as exc:
        failure = exc
        raise
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if failure is None and isinstance(result, BaseException):
                failure = result
        if failure is None:
            await stream.aclose()
        else:
            await stream.reset(str(failure) or type(failure).__name__)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    expected = (StreamReset, LinkError, OSError, asyncio.IncompleteReadError)
    if failure is not None and not isinstance(failure, expected):
        raise failure
