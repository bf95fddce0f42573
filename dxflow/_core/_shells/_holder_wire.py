"""The PTY holder's wire protocol, its limits, and its two byte stores (ring, recording).

Standard library only: `_holder.py` runs standalone (``python -I -S``) and imports this
module as part of its folder's package; the engine imports it through `_wire.py`. See
`_holder.py` for the process, the spec and the state file.

Output is kept in a ring buffer of ``scrollback`` bytes. Every output byte has a global
offset (0 = the first byte ever); the ring retains the offsets ``[start, end)``.

Wire protocol (both directions): frame = 1 byte type + 4-byte big-endian payload length +
payload.

==== ============== ===========================================================
type direction      payload and meaning
==== ============== ===========================================================
A    client→holder  attach, must come first: JSON ``{"offset": int|null|"end", "mode":
                    "rw"|"ro"}``. Reply: ``I``, then the replay (offset null: the
                    whole ring; offset >= start: exactly the bytes from offset;
                    offset < start: ``M`` then the bytes from start), then live
                    output; ``X`` once the session has exited and the client is
                    caught up.
D    client→holder  input bytes, written to the PTY as they are (any bytes).
                    Rejected with ``E`` for ``ro`` clients.
R    client→holder  resize JSON ``{"rows": int, "cols": int}`` (1..1000 each):
                    TIOCSWINSZ + SIGWINCH to the child's process group. The latest
                    resize wins, whichever client sent it.
K    client→holder  JSON ``{"signal": int}`` sent to the child's process group
                    (falls back to the child itself).
P    both           ping; the holder answers ``P`` (pong) with the same payload.
Q    client→holder  quit: SIGHUP the child (SIGKILL after 2 s), remove the socket
                    and state files, close every connection, exit.
C    client→holder  run JSON ``{"tag", "input", "echo"}``: type ``input`` once no
                    other run is in flight, hide its echo, show ``echo`` instead and
                    strip the marks of the tag (see `_holder_runs.py`). Answered
                    with ``F`` after the command's output.
I    holder→client  info JSON: the state dict plus ``"start"`` and ``"end"``.
O    holder→client  output: 8-byte big-endian offset of the first byte + the bytes.
M    holder→client  missed JSON ``{"from": offset, "to": start}``: those bytes fell
                    out of the ring; output resumes at ``to``.
X    holder→client  exit JSON ``{"exit_code": int|null, "signal": int|null}``.
F    holder→client  a run finished: JSON ``{"exit_code", "start", "end"}``, its
                    output is the bytes from ``start`` to ``end``. Sent once the
                    client has been sent the output up to ``end``.
E    holder→client  error JSON ``{"error": str}``; the connection stays open except
                    for protocol violations (bad or missing ``A``, oversized frame).
==== ============== ===========================================================

``ro`` clients may only ping: ``D``, ``R``, ``K``, ``Q`` and ``C`` are answered with ``E``.
``I`` carries ``"runs": 1`` from holders that understand ``C``.
"""

from __future__ import annotations

import codecs
import json
import os
import struct
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~1 MiB of RSS, so it is never imported at run time
    from typing import BinaryIO

__all__ = [
    "ATTACH",
    "DONE",
    "ERROR",
    "EXIT",
    "HEADER",
    "INFO",
    "INPUT",
    "KILL",
    "MAX_FRAME",
    "MISSED",
    "OUTPUT",
    "PING",
    "PONG",
    "QUIT",
    "RESIZE",
    "RUN",
    "Recorder",
    "Ring",
    "frame",
    "json_frame",
    "output",
    "output_frame",
    "output_header",
    "take_frames",
]

# Frame types, client -> holder.
ATTACH = b"A"
INPUT = b"D"
RESIZE = b"R"
KILL = b"K"
PING = b"P"
QUIT = b"Q"
RUN = b"C"
# Frame types, holder -> client.
INFO = b"I"
OUTPUT = b"O"
MISSED = b"M"
EXIT = b"X"
ERROR = b"E"
PONG = b"P"
DONE = b"F"

HEADER = struct.Struct(">cI")
OFFSET = struct.Struct(">Q")
MAX_FRAME = 1 << 20  # largest frame a client may send
# Flow control and timings of the holder (see `_holder.py`).
READ_CHUNK = 64 << 10  # one read of the PTY
BATCH_BYTES = 64 << 10  # largest output batch (and O frame)
BATCH_SECONDS = 0.002  # longest an output batch waits for more bytes
SMALL_READ = 1024  # a wake-up that read less than this is sent at once
QUEUE_LIMIT = 1 << 20  # a client's outgoing queue is refilled only below this
SEND_PARTS = 64  # buffers per sendmsg
INPUT_LIMIT = 1 << 20  # beyond this much input waiting for the PTY, senders are paused
CONTROL_LIMIT = 4 << 20  # a client that lets this much pile up (pongs, errors) is dropped
EXIT_GRACE = 0.2  # after the child exits, wait this long for the PTY's last bytes
KILL_GRACE = 2.0  # SIGHUP, then SIGKILL after this long
WATCH_SECONDS = 5.0  # how often the holder checks that its socket file is still there
MAX_SIZE = 1000  # largest rows / cols
DEFAULT_SCROLLBACK = 2 << 20


# ---------------------------------------------------------------------------------------
# Framing (shared with the engine through _wire.py)


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One frame: type byte, 4-byte big-endian payload length, payload."""
    return HEADER.pack(kind, len(payload)) + payload


def json_frame(kind: bytes, value: object) -> bytes:
    """A frame whose payload is compact JSON."""
    return frame(kind, json.dumps(value, separators=(",", ":")).encode())


def output_header(offset: int, size: int) -> bytes:
    """The first 13 bytes of an ``O`` frame carrying `size` bytes from `offset`."""
    return HEADER.pack(OUTPUT, OFFSET.size + size) + OFFSET.pack(offset)


def output_frame(offset: int, data: bytes | bytearray) -> bytes:
    """An ``O`` frame: 8-byte big-endian offset of the first byte, then the bytes."""
    return output_header(offset, len(data)) + data


def output(payload: bytes) -> tuple[int, bytes]:
    """Split an ``O`` payload into (offset of the first byte, bytes)."""
    if len(payload) < OFFSET.size:
        raise ValueError(f"an O frame needs at least {OFFSET.size} bytes, got {len(payload)}")
    return OFFSET.unpack_from(payload)[0], payload[OFFSET.size :]


def take_frames(buffer: bytearray, limit: int = MAX_FRAME) -> list[tuple[bytes, bytes]]:
    """Remove and return the complete frames at the front of `buffer`.

    Raises ValueError when a frame announces a payload larger than `limit`.
    """
    frames: list[tuple[bytes, bytes]] = []
    position = 0
    while len(buffer) - position >= HEADER.size:
        kind, size = HEADER.unpack_from(buffer, position)
        if size > limit:
            raise ValueError(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        end = position + HEADER.size + size
        if len(buffer) < end:
            break
        frames.append((kind, bytes(buffer[position + HEADER.size : end])))
        position = end
    del buffer[:position]
    return frames


# ---------------------------------------------------------------------------------------
# Scrollback and recording


class Ring:
    """The last `capacity` output bytes, addressed by global offsets [start, end).

    The buffer grows up to `capacity`, then is overwritten in place (the byte at offset
    `o` lives at index ``o % capacity``): no reallocation, no copy of old bytes.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.data = bytearray()
        self.end = 0

    @property
    def start(self) -> int:
        return max(0, self.end - self.capacity)

    def append(self, chunk: bytes) -> None:
        if len(self.data) < self.capacity:
            if self.end + len(chunk) <= self.capacity:
                self.data += chunk
                self.end += len(chunk)
                return
            self.data += bytes(self.capacity - len(self.data))  # full size from now on
        view = memoryview(chunk)
        if len(view) > self.capacity:  # only the tail survives
            self.end += len(view) - self.capacity
            view = view[-self.capacity :]
        position = self.end % self.capacity
        first = min(len(view), self.capacity - position)
        self.data[position : position + first] = view[:first]
        self.data[: len(view) - first] = view[first:]
        self.end += len(view)

    def read(self, offset: int, limit: int) -> bytes:
        """Up to `limit` bytes from `offset` (start <= offset <= end)."""
        size = min(limit, self.end - offset)
        position = offset % self.capacity
        first = min(size, self.capacity - position)
        with memoryview(self.data) as view:
            if first == size:
                return bytes(view[position : position + size])
            return b"".join((view[position:], view[: size - first]))


class Recorder:
    """Appends the session to an asciicast v2 file, one flushed line per event."""

    def __init__(self, fd: int, cols: int, rows: int, created: float, term: str) -> None:
        # The engine opened the file through the object store's walker and handed the
        # descriptor over: the holder never resolves a path a container could redirect.
        self.file: BinaryIO = os.fdopen(fd, "ab")
        self.began = time.monotonic() - max(0.0, time.time() - created)
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        if self.file.tell() == 0:
            header = {
                "version": 2,
                "width": cols,
                "height": rows,
                "timestamp": int(created),
                "env": {"TERM": term},
            }
            self._line(header)

    def output(self, data: bytes) -> None:
        text = self.decoder.decode(data)  # an incomplete UTF-8 tail waits for the next batch
        if text:
            self._event("o", text)

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> None:
        text = self.decoder.decode(b"", True)
        if text:
            self._event("o", text)
        self.file.close()

    def _event(self, kind: str, text: str) -> None:
        self._line([round(time.monotonic() - self.began, 6), kind, text])

    def _line(self, value: object) -> None:
        self.file.write(json.dumps(value, ensure_ascii=False).encode() + b"\n")
        self.file.flush()
