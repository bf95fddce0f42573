"""The bridge link: many byte streams multiplexed over one WebSocket, with flow control.

Each WebSocket binary message is one frame: a `struct.pack("!BI", type, stream_id)` header,
then the payload (the table is in `_frames.py`): HELLO 0 (stream 0, JSON), OPEN 1 (JSON
target), ACCEPT 2, DATA 3 (at most 256 KiB), END 4 (half close), RESET 5 (UTF-8 reason),
CREDIT 6 (`!I` bytes granted; on stream 0: the sender's window, every stream's first
credit), PING 7 (stream 0, `!d` clock), PONG 8 (the 8 bytes echoed, then JSON facts).
The master opens odd stream ids; even ones are left to the agent.

A writer never has more DATA in flight than the reader granted, so a stream buffers at most
its window and a slow reader stalls only its own stream. Frames leave through one gate whose
holder sends queued control frames first: a PING or CREDIT waits for at most one DATA frame.
The read loop only queues what it sends, so two peers writing flat out cannot deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from . import _frames as fr
from ._carriers import (
    Carrier,
    LinkError,
    StreamReset,
    memory_pair,
)

__all__ = [
    "Carrier",
    "Link",
    "LinkError",
    "Stream",
    "StreamReset",
    "memory_pair",
    "splice",
]

log = logging.getLogger(__name__)
OnOpen = Callable[["Stream", dict[str, Any]], Awaitable[None]]


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


class Stream:
    """One byte stream of a link; one task reads and one task writes at a time."""

    def __init__(self, link: Link, stream_id: int, credit: int) -> None:
        self.id = stream_id
        self._link = link
        self._batch = max(1, link._window >> 2)
        self._allowance = link._window  # what the peer may send before our next CREDIT
        self._consumed = 0  # read since our last CREDIT
        self._credit = credit  # what we may send
        self._chunks: deque[memoryview] = deque()
        self._eof = self._ended = False  # END received / sent
        self._discard = self._accepted = False
        self._error: Exception | None = None
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        self._opened: asyncio.Future[None] | None = None

    @property
    def readable(self) -> bool:
        """Bytes, the end or an error wait to be read: on an idle HTTP connection, the
        agent closed it (its keep-alive expired) and it must not be reused."""
        return bool(self._chunks) or self._eof or self._error is not None

    async def accept(self) -> None:
        """Agent side, in `on_open`: the local target is connected, bytes may flow."""
        self._raise()
        if not self._accepted:
            self._accepted = True
            await self._link._control(fr.encode(fr.ACCEPT, self.id))

    async def read(self, max_bytes: int = 1 << 16) -> bytes | memoryview:
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
            self._chunks[0], chunk = chunk[max_bytes:], chunk[:max_bytes]
        self._consumed += len(chunk)
        if self._consumed >= self._batch:
            self._grant()
        return chunk  # a view of the received message: its bytes are not copied again

    async def write(self, data: bytes | memoryview) -> None:
        """Waits for credit: the peer never holds more than its window of our bytes."""
        view = memoryview(data).cast("B")
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
            size = min(total - offset, fr.MAX_DATA, self._credit)
            self._credit -= size
            # header and payload go to the carrier apart: the payload is never copied here
            await self._link._send_data(fr.HEADER.pack(fr.DATA, self.id),
                                        view[offset : offset + size])  # fmt: skip
            offset += size

    async def end(self) -> None:
        """Half close: no more data from this side (sends END once)."""
        if not self._ended:
            self._raise()
            self._ended = True
            if self._eof:
                self._link._forget(self)
            await self._link._control(fr.encode(fr.END, self.id))

    async def reset(self, reason: str = "") -> None:
        """Aborts both directions; the peer's reads and writes raise StreamReset(reason)."""
        if self._error is None and self._link._streams.get(self.id) is self:
            self._fail(StreamReset(reason))
            with contextlib.suppress(LinkError):
                await self._link._control(fr.encode(fr.RESET, self.id, reason.encode()))

    async def aclose(self) -> None:
        """Ends our side if not yet; forgotten once the peer's side ended too. Never raises."""
        self._discard = True
        self._consumed += sum(map(len, self._chunks))
        self._chunks.clear()
        if self._consumed:  # unread bytes are dropped, not left owed: the peer can reach END
            self._grant()
        with contextlib.suppress(Exception):
            await self.end()
        if self._eof or self._error is not None:
            self._link._forget(self)

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error.with_traceback(None)

    def _grant(self) -> None:
        grant, self._consumed = self._consumed, 0
        self._allowance += grant
        if not self._eof and self._error is None:
            self._link._post(fr.encode(fr.CREDIT, self.id, fr.U32.pack(grant)))

    def _received(self, payload: memoryview) -> None:
        if len(payload) > self._allowance or self._eof:
            reason = "DATA after END" if self._eof else "flow control violated"
            self._fail(StreamReset(reason))
            self._link._post(fr.encode(fr.RESET, self.id, reason.encode()))
            return
        self._allowance -= len(payload)
        if self._discard:
            self._consumed += len(payload)
            if self._consumed >= self._batch:
                self._grant()
        else:
            self._chunks.append(payload)
            _wake(self._reader)

    def _fail(self, error: Exception) -> None:
        """Reads and writes raise `error` from now on; the link forgets the stream."""
        if self._error is None:
            self._error = error
            if not self._eof:  # after the peer's END its bytes are complete: still readable
                self._chunks.clear()
            self._link._forget(self)
        _wake(self._reader)
        _wake(self._writer)
        _wake(self._opened)


class Link:
    """One carrier, many streams: `run()` it (in a task) for the link's lifetime."""

    def __init__(
        self,
        carrier: Carrier,
        *,
        side: Literal["master", "agent"],
        on_open: OnOpen | None = None,
        interval: float = 5.0,
        window: int = 4 << 20,
        facts: Callable[[], dict[str, Any]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < window < 1 << 32:
            raise ValueError(f"a window of {window} bytes does not fit in 32 bits")
        self.side = side
        self._peer = "agent" if side == "master" else "master"
        self._carrier, self._on_open, self._facts, self._clock = carrier, on_open, facts, clock
        self._interval = interval
        self._window = self._peer_window = window  # until the peer announces its own
        self._next_id = 1 if side == "master" else 2
        self._peer_last_id = 0
        self._streams: dict[int, Stream] = {}
        self._handlers: set[asyncio.Task[None]] = set()
        # The send gate: `_busy` while a task sends; `_queue` holds the control frames its
        # holder sends first; `_turns` are the DATA writers waiting for it, in order.
        self._busy = False
        self._queue: deque[bytes] = deque()
        self._turns: deque[asyncio.Future[None]] = deque()
        self._flush = asyncio.Event()
        self._announced = self._running = False
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
        """Reads frames until the carrier closes; raises LinkError unless it closed cleanly."""
        if self._running:
            raise RuntimeError("the link is already running")
        self._running = True
        loops = [self._read_frames(), self._flush_queue(), self._heartbeat()]
        tasks = [asyncio.create_task(loop) for loop in loops]
        try:
            with contextlib.suppress(LinkError):
                await self._announce()
            await self._ended.wait()
        finally:
            self._stop(LinkError("the link's run() was cancelled"))
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.close()
            handlers = self._handlers - {asyncio.current_task()}
            await asyncio.gather(*handlers, return_exceptions=True)
        assert self._end is not None
        if not self._end.clean:
            raise self._end

    async def open(self, target: dict[str, Any], timeout: float = 10.0) -> Stream:  # noqa: ASYNC109
        """A stream to `target` once the peer accepted it; StreamReset if it refused."""
        self._check()
        # No credit before ACCEPT: the peer's window announcement may still be on its way.
        stream = self._streams[self._next_id] = Stream(self, self._next_id, 0)
        self._next_id += 2
        stream._opened = asyncio.get_running_loop().create_future()
        try:
            await self._announce()
            await self._control(fr.encode_json(fr.OPEN, stream.id, target))
            async with asyncio.timeout(timeout):
                await stream._opened
        except BaseException:
            if stream._error is None and not self.closed:  # timed out or cancelled
                stream._fail(StreamReset("the opener gave up"))
                self._post(fr.encode(fr.RESET, stream.id, b"the opener gave up"))
            raise
        stream._raise()
        return stream

    async def send_hello(self, payload: dict[str, Any]) -> None:
        self._check()
        await self._control(fr.encode_json(fr.HELLO, 0, payload))

    async def close(self, reason: str = "") -> None:
        """Every stream fails with LinkError(reason); `run()` returns."""
        self._stop(LinkError(reason or "link closed", clean=True))
        end = self._end
        assert end is not None
        for stream in list(self._streams.values()):
            stream._fail(LinkError(str(end), clean=end.clean))
        while self._turns:
            if not (turn := self._turns.popleft()).done():
                turn.set_exception(LinkError(str(end), clean=end.clean))
        for task in self._handlers:
            task.cancel()
        with contextlib.suppress(Exception):
            await self._carrier.close()

    def _check(self) -> None:
        if self._end is not None:
            raise LinkError(str(self._end), clean=self._end.clean)

    def _stop(self, error: LinkError) -> None:
        if self._end is None:
            self._end = error
            self._ended.set()

    def _forget(self, stream: Stream) -> None:
        if self._streams.get(stream.id) is stream:
            del self._streams[stream.id]

    async def _send(self, *frame: bytes | memoryview) -> None:
        self._check()
        try:
            await self._carrier.send(*frame)
        except LinkError as exc:
            self._stop(exc)
            raise
        except Exception as exc:
            self._stop(error := LinkError(f"the carrier failed to send: {exc!r}"))
            raise error from exc

    async def _drain(self) -> None:
        while self._queue:
            await self._send(self._queue.popleft())

    def _release(self) -> None:
        while self._turns:
            if not (turn := self._turns.popleft()).done():
                turn.set_result(None)  # the gate passes on, still `_busy`
                return
        self._busy = False
        if self._queue:
            self._flush.set()

    async def _control(self, frame: bytes) -> None:
        """Sends a control frame ahead of every DATA frame not yet on its way."""
        self._queue.append(frame)
        if not self._busy:
            self._busy = True
            try:
                await self._drain()
            finally:
                self._release()

    def _post(self, frame: bytes) -> None:
        """`_control` for the read loop, which must never wait on the carrier."""
        self._queue.append(frame)
        if not self._busy:
            self._flush.set()

    async def _send_data(self, header: bytes, payload: memoryview) -> None:
        if self._busy:
            self._turns.append(turn := asyncio.get_running_loop().create_future())
            try:
                await turn
            except BaseException:
                if turn.done() and not turn.cancelled() and turn.exception() is None:
                    self._release()  # cancelled just as the gate came to us: pass it on
                raise
        self._busy = True
        try:
            await self._drain()
            await self._send(header, payload)
        finally:
            self._release()

    async def _flush_queue(self) -> None:
        while True:
            await self._flush.wait()
            self._flush.clear()
            if not self._busy and self._queue:
                self._busy = True
                try:
                    await self._drain()
                finally:
                    self._release()

    async def _announce(self) -> None:
        if not self._announced:
            self._announced = True
            await self._control(fr.encode(fr.CREDIT, 0, fr.U32.pack(self._window)))

    async def _read_frames(self) -> None:
        streams = self._streams
        try:
            while True:
                message = await self._carrier.recv()
                self.last_seen = self._clock()
                kind, stream_id, payload = fr.decode(message)
                if kind != fr.DATA:
                    self._handle(kind, stream_id, payload)
                elif (stream := streams.get(stream_id)) is not None:
                    stream._received(payload)  # (else reset or done: bytes in flight drop)
        except fr.FrameError as exc:
            self._stop(LinkError(f"malformed frame: {exc}"))
        except LinkError as exc:
            self._stop(exc)
        except Exception as exc:
            log.exception("bridge link: reading frames failed")
            self._stop(LinkError(f"reading frames failed: {exc!r}"))

    def _handle(self, kind: int, stream_id: int, payload: memoryview) -> None:
        stream = self._streams.get(stream_id)
        if kind == fr.CREDIT:
            grant = fr.u32(kind, payload)
            if stream_id == 0:
                self._peer_window = grant
            elif stream is not None:
                stream._credit += grant
                _wake(stream._writer)
        elif kind == fr.END and stream is not None:
            stream._eof = True
            if stream._ended:
                self._forget(stream)
            _wake(stream._reader)
        elif kind == fr.ACCEPT and stream is not None and stream._opened is not None:
            if not stream._accepted:
                stream._accepted = True
                stream._credit += self._peer_window
                _wake(stream._opened)
        elif kind == fr.RESET and stream is not None:
            stream._fail(StreamReset(bytes(payload).decode(errors="replace")))
        elif kind == fr.OPEN:
            self._opened_by_peer(stream_id, fr.json_object(kind, payload))
        elif kind == fr.PING:
            if len(payload) != fr.CLOCK.size:
                raise fr.FrameError(f"PING payload of {len(payload)} bytes, not 8")
            self._post(fr.encode(fr.PONG, 0, bytes(payload) + self._facts_json()))
        elif kind == fr.PONG:
            if len(payload) < fr.CLOCK.size:
                raise fr.FrameError(f"PONG payload of {len(payload)} bytes, under 8")
            self.rtt = max(0.0, self._clock() - fr.CLOCK.unpack(payload[:8])[0])
            if len(payload) > fr.CLOCK.size:
                self.peer_facts = fr.json_object(kind, payload[8:])
        elif kind == fr.HELLO:
            self.hello = fr.json_object(kind, payload)

    def _facts_json(self) -> bytes:
        try:
            return json.dumps(self._facts(), separators=(",", ":")).encode() if self._facts else b""
        except Exception:
            log.exception("bridge link: the facts for a PONG failed")
            return b""

    def _opened_by_peer(self, stream_id: int, target: dict[str, Any]) -> None:
        if stream_id % 2 != (self.side == "agent"):
            raise fr.FrameError(f"OPEN of stream {stream_id}: not the {self._peer}'s to open")
        if stream_id <= self._peer_last_id:
            raise fr.FrameError(f"OPEN of stream {stream_id} again")
        self._peer_last_id = stream_id
        if self._on_open is None:
            self._post(fr.encode(fr.RESET, stream_id, b"this side accepts no streams"))
            return
        stream = self._streams[stream_id] = Stream(self, stream_id, self._peer_window)
        task = asyncio.create_task(self._serve(self._on_open, stream, target))
        self._handlers.add(task)
        task.add_done_callback(self._handlers.discard)

    async def _serve(self, on_open: OnOpen, stream: Stream, target: dict[str, Any]) -> None:
        try:
            await on_open(stream, target)
        except Exception as exc:
            if stream._accepted and not isinstance(exc, StreamReset | LinkError):
                log.warning("bridge link: stream %d failed: %r", stream.id, exc)
            await stream.reset(str(exc) or type(exc).__name__)
        else:
            if not stream._accepted:
                await stream.reset("on_open returned without accepting")

    async def _heartbeat(self) -> None:
        while True:
            if self.side == "master":
                self._post(fr.encode(fr.PING, 0, fr.CLOCK.pack(self._clock())))
            await asyncio.sleep(self._interval)
            if (silent := self._clock() - self.last_seen) > 3 * self._interval:
                self._stop(LinkError(f"no heartbeat from the {self._peer} for {silent:.3g} s"))
                return


async def splice(
    stream: Stream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Bytes both ways until both directions ended; a reset or an error ends both."""

    async def outbound() -> None:
        while data := await reader.read(4 * fr.MAX_DATA):  # all there is: write() cuts frames
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
            if failure is None and isinstance(result, Exception):  # not our own cancel
                failure = result
        if failure is None:
            await stream.aclose()
            writer.close()
        else:
            await stream.reset(str(failure) or type(failure).__name__)
            writer.transport.abort()  # the local end learns of the failure too
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    if failure is not None and not isinstance(failure, StreamReset | LinkError | OSError):
        raise failure
