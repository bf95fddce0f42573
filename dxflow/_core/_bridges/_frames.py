"""The bridge link's frame codec: one WebSocket binary message is one frame.

A frame is a 5-byte header, `struct.pack("!BI", type, stream_id)`, then the payload:

====  ======  =========  ==================================================================
type  name    stream     payload
====  ======  =========  ==================================================================
0     HELLO   0          JSON object, the sender's introduction (application-defined)
1     OPEN    new odd    JSON object, the target to connect to (the master opens streams)
2     ACCEPT  stream     empty: the target is connected, bytes may flow
3     DATA    stream     bytes, at most `MAX_DATA` of them
4     END     stream     empty: the sender sends no more data (half close)
5     RESET   stream     UTF-8 reason: both directions are aborted (also refuses an OPEN)
6     CREDIT  stream     `!I`: the receiver grants that many more bytes of DATA
6     CREDIT  0          `!I`: the sender's receive window, the initial credit of every stream
7     PING    0          `!d`: the sender's clock
8     PONG    0          the PING's 8 bytes echoed, then optionally a JSON object of facts
====  ======  =========  ==================================================================
"""

from __future__ import annotations

import json
import struct
from typing import Any

HEADER = struct.Struct("!BI")
HEADER_SIZE = HEADER.size
U32 = struct.Struct("!I")
CLOCK = struct.Struct("!d")

HELLO, OPEN, ACCEPT, DATA, END, RESET, CREDIT, PING, PONG = range(9)
NAMES = ("HELLO", "OPEN", "ACCEPT", "DATA", "END", "RESET", "CREDIT", "PING", "PONG")
LINK_TYPES = frozenset({HELLO, PING, PONG})
"""Types that belong to the link (stream 0) rather than to one stream."""

PROTOCOL = 1
"""The wire version: a master and an agent speaking different ones refuse to link."""

MAX_DATA = 1 << 18
"""The largest DATA payload: a control frame never waits behind more than this."""


class FrameError(ValueError):
    """A frame the protocol does not allow; the link cannot go on after one."""


def encode(kind: int, stream_id: int, payload: bytes | memoryview = b"") -> bytes:
    # `bytes + memoryview` is the one copy a DATA payload takes on its way out.
    return HEADER.pack(kind, stream_id) + payload


def encode_json(kind: int, stream_id: int, value: dict[str, Any]) -> bytes:
    return encode(kind, stream_id, json.dumps(value, separators=(",", ":")).encode())


def decode(message: bytes) -> tuple[int, int, memoryview]:
    """(type, stream id, payload) of one message; the payload is a view, not a copy."""
    if len(message) < HEADER_SIZE:
        raise FrameError(f"a frame of {len(message)} bytes, shorter than its 5-byte header")
    kind, stream_id = HEADER.unpack_from(message)
    if kind >= len(NAMES):
        raise FrameError(f"unknown frame type {kind} on stream {stream_id}")
    if (kind in LINK_TYPES) != (stream_id == 0) and kind != CREDIT:
        raise FrameError(f"{NAMES[kind]} on stream {stream_id}")
    return kind, stream_id, memoryview(message)[HEADER_SIZE:]


def json_object(kind: int, payload: memoryview | bytes) -> dict[str, Any]:
    try:
        value = json.loads(bytes(payload))
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise FrameError(f"{NAMES[kind]} payload is not a JSON object")
    return value


def u32(kind: int, payload: memoryview) -> int:
    if len(payload) != U32.size:
        raise FrameError(f"{NAMES[kind]} payload of {len(payload)} bytes, not 4")
    value: int = U32.unpack(payload)[0]
    return value
