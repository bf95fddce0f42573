"""The link's WebSocket, spoken directly on the connection (RFC 6455, the part a link uses).

A bridge moves bulk bytes, and a general WebSocket library costs more than the link: on
loopback a `websockets` client sending 256 KiB messages to uvicorn's server saturated its
core at about 550 MB/s (serialising each frame copies it three times; uvicorn parses it
with a generator and hands it over as an ASGI message). Here a frame is a header and its
payload written together, the client's payload masked in one pass (`websockets`' C
`apply_mask`), and frames are cut out of one receive buffer: the same bytes move at about
twice the speed with half the CPU. The wire stays a standard WebSocket (proxies and load
balancers pass it; `websockets` talks to it in the tests): binary messages, fragmented
ones reassembled, pings answered, the close handshake, no extension.

`dial` is the agent's side (the client: its frames are masked); `accept` the master's,
on a connection the server's fast path hands over with the request's head.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import ssl
import struct
from collections import deque
from typing import Any
from urllib.parse import urlsplit

from websockets.speedups import apply_mask

from ._carriers import LinkError

__all__ = ["FrameSocket", "accept", "accept_key", "dial"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_MESSAGE = 1 << 20
"""The largest message accepted: a link frame is at most 256 KiB and a header."""
HIGH_WATER = 4 << 20
"""Received bytes not yet taken by `recv()` above which the socket stops reading."""
FIRST_CAPACITY = 64 << 10
"""The receive buffer at first: the kernel reads into it (a buffered protocol) and frames
are cut out of it. A link that only carries calls and heartbeats keeps this much (a
master holds one per agent); one that carries bulk grows it to hold a whole frame and
READ_ROOM more, so that each read can take what the kernel has."""
READ_ROOM = 256 << 10
MIN_ROOM = 16 << 10
"""Less free room than this at the buffer's end: the pending bytes move to its start."""
MAX_HEAD = 64 << 10
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
_SHORT, _MEDIUM, _LONG = struct.Struct("!BB"), struct.Struct("!BBH"), struct.Struct("!BBQ")


class _Violation(LinkError):
    """The peer broke the protocol: the connection closes with `code` (RFC 6455, 7.4.1)."""

    def __init__(self, message: str, code: int = 1002) -> None:
        super().__init__(message)
        self.code = code


def accept_key(key: str | bytes) -> str:
    """The `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`."""
    raw = key.encode() if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw.strip() + GUID).digest()).decode()  # noqa: S324


def _head(opcode: int, length: int, masked: bool) -> bytes:
    first, mask_bit = 0x80 | opcode, 0x80 if masked else 0
    if length < 126:
        return _SHORT.pack(first, mask_bit | length)
    if length < 1 << 16:
        return _MEDIUM.pack(first, mask_bit | 126, length)
    return _LONG.pack(first, mask_bit | 127, length)


class FrameSocket(asyncio.BufferedProtocol):
    """One WebSocket connection once its handshake is done: a link's carrier."""

    def __init__(self, *, client: bool) -> None:
        self._client = client  # a client masks what it sends; a server requires masks
        self._transport: asyncio.Transport | None = None
        # Never resized in place (the transport may hold a view of it): replaced by a
        # bigger one when a frame needs more room.
        self._buffer = bytearray(FIRST_CAPACITY)
        self._start = self._stop = 0  # the bytes received and not parsed yet
        self._wanted = 0  # the size of the frame being received, once its header came
        self._parts: list[bytes] = []  # a fragmented message being reassembled
        self._opcode = 0
        self._messages: deque[tuple[int, bytes]] = deque()
        self._queued = 0
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._error: LinkError | None = None
        self._broken = False  # a violation or a refusal: what else arrives is not read
        self._close_sent = False
        self.lost = asyncio.get_running_loop().create_future()
        # The client's opening handshake: the server's answer, once its head (and the
        # body of a refusal) arrived; frames that follow stay in the buffer.
        self._answer: asyncio.Future[tuple[int, dict[str, str], bytes]] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        buffer, start, stop = self._buffer, self._start, self._stop
        size = len(buffer)
        if self._wanted > size // 2:  # a big frame: room for it, and for a read after it
            size = max(size, self._wanted + READ_ROOM)
        if size != len(buffer) or (start and len(buffer) - stop < MIN_ROOM):
            moved = bytearray(size) if size != len(buffer) else buffer
            moved[: stop - start] = buffer[start:stop]  # at most a frame
            self._buffer, self._start, self._stop = moved, 0, stop - start
        return memoryview(self._buffer)[self._stop :]

    def buffer_updated(self, nbytes: int) -> None:
        self._stop += nbytes
        self._received()

    def data_received(self, data: bytes) -> None:
        """(For a transport that hands over bytes instead of reading into the buffer.)"""
        view = memoryview(data)
        while view:
            room = self.get_buffer(len(view))
            size = min(len(room), len(view))
            room[:size] = view[:size]
            room.release()
            view = view[size:]
            self._stop += size
            self._received()

    def _received(self) -> None:
        if self._broken:  # (after a clean end frames are still parsed: the peer's close)
            self._start = self._stop = 0
            return
        if self._answer is not None:
            self._answered()
            if self._answer is not None:
                return
        try:
            self._parse()
        except _Violation as exc:
            self._fail(exc, exc.code)
        if self._queued > HIGH_WATER and not self._reading_paused and self._transport:
            self._reading_paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool | None:
        self._end(LinkError("the connection was closed without a close frame"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(LinkError(f"the connection was lost: {exc}" if exc else
                            "the connection was closed without a close frame"))  # fmt: skip
        if not self.lost.done():
            self.lost.set_result(None)
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    # -- Carrier ------------------------------------------------------------------------

    async def send(self, *parts: bytes | memoryview) -> None:
        """One binary message of `parts`; waits while the connection's write buffer is
        full."""
        self._write(BINARY, *parts)
        if self._writable is not None:
            await asyncio.shield(self._writable)
            self._raise()

    async def recv(self) -> bytes:
        """The next binary message; LinkError once the connection ended."""
        opcode, payload = await self.receive()
        if opcode != BINARY:
            self._fail(LinkError("malformed frame: a text message"), code=1003)
            raise LinkError("malformed frame: a text message")
        return payload

    async def receive(self) -> tuple[int, bytes]:
        """The next message as (TEXT or BINARY, payload)."""
        while not self._messages:
            self._raise()
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        opcode, payload = self._messages.popleft()
        self._queued -= len(payload)
        if self._reading_paused and self._queued <= HIGH_WATER // 2 and self._transport:
            self._reading_paused = False
            self._transport.resume_reading()
        return opcode, payload

    async def send_text(self, text: str) -> None:
        self._write(TEXT, text.encode())

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The close handshake, given a second; then the connection is closed."""
        if self._transport is None:
            return
        self._send_close(code, reason)
        self._end(LinkError("link closed", clean=True))
        try:
            async with asyncio.timeout(1.0):
                await asyncio.shield(self.lost)
        except TimeoutError:  # the peer never answered: no more waiting for it
            self._transport.abort()

    def _answered(self) -> None:
        """The client's handshake: resolve `_answer` once the server's answer is whole."""
        answer, buffer, start = self._answer, self._buffer, self._start
        assert answer is not None
        end = buffer.find(b"\r\n\r\n", start, self._stop)
        self._wanted = MAX_HEAD + 4  # room for a whole head (and a refusal's body)
        if end < 0:
            if self._stop - start > MAX_HEAD:
                self._answer = None
                answer.set_exception(LinkError(f"the answer's head is over {MAX_HEAD} bytes"))
            return
        try:
            status, fields = _parse_head(bytes(buffer[start:end]))
        except LinkError as exc:
            self._answer = None
            answer.set_exception(exc)
            return
        declared = fields.get("content-length", "0")
        length = min(int(declared), MAX_HEAD) if declared.isdigit() else 0
        if status != 101 and self._stop < end + 4 + length:
            return  # a refusal: its body (the error) is still on its way
        self._answer = None
        self._wanted = 0
        if status == 101:
            self._start = end + 4  # what follows is frames
            answer.set_result((status, fields, b""))
        else:
            answer.set_result((status, fields, bytes(buffer[end + 4 : end + 4 + length])))
            self._start = self._stop = 0
            self._broken = True
            self._error = LinkError(f"the server refused the upgrade (HTTP {status})")

    # -- the frames ---------------------------------------------------------------------

    def _write(self, opcode: int, *parts: bytes | memoryview) -> None:
        self._raise()
        transport = self._transport
        assert transport is not None
        size = sum(map(len, parts))
        head = _head(opcode, size, self._client)
        if self._client:  # each part masked where it falls in the message: no join
            mask, offset, out = os.urandom(4), 0, [head]
            out.append(mask)
            for part in parts:
                turn = offset % 4
                out.append(apply_mask(part, mask[turn:] + mask[:turn] if turn else mask))
                offset += len(part)
            transport.writelines(out)
        elif size < 1024:
            transport.write(b"".join((head, *parts)))
        else:
            transport.writelines([head, *parts])

    def _parse(self) -> None:
        buffer, pos, size = self._buffer, self._start, self._stop
        view = memoryview(buffer)
        try:
            while size - pos >= 2:
                first, second = buffer[pos], buffer[pos + 1]
                length, start = second & 0x7F, pos + 2
                if length == 126:
                    if size - start < 2:
                        break
                    length, start = _MEDIUM.unpack_from(buffer, pos)[2], start + 2
                elif length == 127:
                    if size - start < 8:
                        break
                    length, start = _LONG.unpack_from(buffer, pos)[2], start + 8
                masked = bool(second & 0x80)
                if masked == self._client:
                    raise _Violation(
                        "malformed frame: "
                        + ("masked by the server" if masked else "not masked by the client")
                    )
                if length > MAX_MESSAGE:
                    raise _Violation(f"a message of {length} bytes, over {MAX_MESSAGE}", 1009)
                end = start + (4 if masked else 0) + length
                if end > size:
                    self._wanted = end - pos
                    break
                if masked:
                    payload = apply_mask(view[start + 4 : end], bytes(view[start : start + 4]))
                else:
                    payload = bytes(view[start:end])
                self._start = pos = end
                self._frame(first, payload)
        finally:
            view.release()
        if self._start == self._stop:
            self._start = self._stop = self._wanted = 0  # the next read starts at 0

    def _frame(self, first: int, payload: bytes) -> None:
        if first & 0x70:
            raise _Violation("malformed frame: reserved bits set (no extension was agreed)")
        opcode, fin = first & 0x0F, bool(first & 0x80)
        if opcode >= CLOSE:
            if not fin or len(payload) > 125:
                raise _Violation("malformed frame: a control frame fragmented or over 125 bytes")
            self._control(opcode, payload)
            return
        if opcode not in (0, TEXT, BINARY) or (opcode == 0) != bool(self._parts):
            raise _Violation(f"malformed frame: opcode {opcode} out of sequence")
        if opcode:
            self._opcode = opcode
        if fin and not self._parts:
            self._deliver(opcode, payload)
            return
        self._parts.append(payload)
        if sum(map(len, self._parts)) > MAX_MESSAGE:
            raise _Violation(f"a fragmented message over {MAX_MESSAGE} bytes", 1009)
        if fin:
            message, self._parts = b"".join(self._parts), []
            self._deliver(self._opcode, message)

    def _control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            if self._error is None:
                self._write(PONG, payload)
        elif opcode == CLOSE:
            code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
            reason = payload[2:].decode(errors="replace")
            self._send_close(code if code not in (1005, 1006, 1015) else 1000, "")
            clean = code in (1000, 1001)
            self._end(LinkError(f"WebSocket closed ({code}{', ' + reason if reason else ''})",
                                clean=clean))  # fmt: skip
            if not self._client and self._transport is not None:
                self._transport.close()  # the server ends the TCP connection first
        elif opcode != PONG:
            raise _Violation(f"malformed frame: unknown control opcode {opcode}")

    def _deliver(self, opcode: int, payload: bytes) -> None:
        self._messages.append((opcode, payload))
        self._queued += len(payload)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- the end ------------------------------------------------------------------------

    def _send_close(self, code: int, reason: str) -> None:
        if self._close_sent or self._transport is None or self._transport.is_closing():
            return
        self._close_sent = True
        with contextlib.suppress(Exception):
            payload = struct.pack("!H", code) + reason.encode()[:120]
            head = _head(CLOSE, len(payload), self._client)
            if self._client:
                mask = os.urandom(4)
                self._transport.write(head + mask + apply_mask(payload, mask))
            else:
                self._transport.write(head + payload)

    def _fail(self, error: LinkError, code: int) -> None:
        self._broken = True
        self._start = self._stop = 0
        self._send_close(code, str(error)[:120])
        self._end(error)
        if self._transport is not None:
            self._transport.close()

    def _end(self, error: LinkError) -> None:
        if self._error is None:
            self._error = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(LinkError(f"no answer to the upgrade: {error}"))

    def _raise(self) -> None:
        if self._error is not None:
            raise LinkError(str(self._error), clean=self._error.clean)

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# -- the handshakes ---------------------------------------------------------------------------


async def dial(
    url: str,
    headers: dict[str, str],
    *,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 15.0,  # noqa: ASYNC109
) -> FrameSocket:
    """Open a WebSocket to `url` (ws:// or wss://) with `headers`; LinkError if refused
    (its message the answer's status and body, e.g. the server's error envelope)."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host, port = parts.hostname or "", parts.port or (443 if secure else 80)
    key = base64.b64encode(os.urandom(16)).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}",
             "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
             "Sec-WebSocket-Version: 13", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    loop = asyncio.get_running_loop()
    socket = FrameSocket(client=True)
    answer = socket._answer = loop.create_future()
    async with asyncio.timeout(timeout):
        transport, _ = await loop.create_connection(
            lambda: socket, host, port,
            ssl=(ssl_context or ssl.create_default_context()) if secure else None,
            server_hostname=host if secure else None,
        )  # fmt: skip
        try:
            transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            status, fields, body = await answer
            if status != 101:
                raise LinkError(f"HTTP {status}: {body.decode(errors='replace')[:2000]}")
            if fields.get("sec-websocket-accept") != accept_key(key):
                raise LinkError("the server's Sec-WebSocket-Accept does not match the key")
        except BaseException:
            transport.abort()
            raise
    return socket


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    status_line, *field_lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code = rest.partition(" ")[0]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise LinkError(f"not an HTTP answer: {status_line[:100]!r}")
    fields = {}
    for line in field_lines:
        name, sep, value = line.partition(":")
        if sep:
            fields[name.strip().lower()] = value.strip()
    return int(code), fields


def handshake_error(headers: list[tuple[bytes, bytes]]) -> str | None:
    """What is wrong with a client's upgrade request, or None."""
    fields = {name.lower(): value for name, value in headers}
    if fields.get(b"upgrade", b"").lower() != b"websocket":
        return "Upgrade: websocket is missing"
    if fields.get(b"sec-websocket-version") != b"13":
        return "Sec-WebSocket-Version: 13 is missing"
    key = fields.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            raise ValueError
    except ValueError:
        return "Sec-WebSocket-Key is not 16 bytes in base64"
    return None


def accept(transport: Any, headers: list[tuple[bytes, bytes]], rest: bytes) -> FrameSocket:
    """The server's side: answer 101 to a valid upgrade request (check it first with
    `handshake_error`) and speak WebSocket on `transport` from now on."""
    key = dict((name.lower(), value) for name, value in headers)[b"sec-websocket-key"]
    transport.pause_reading()  # resumed below: reading restarts as the new protocol's
    transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: "
                    + accept_key(key).encode() + b"\r\n\r\n")  # fmt: skip
    socket = FrameSocket(client=False)
    transport.set_protocol(socket)
    socket.connection_made(transport)
    if rest:
        socket.data_received(rest)
    transport.resume_reading()
    return socket
