"""What travels between an engine's server and its HTTP and WebSocket clients.

One module for every form the two ends must agree on, so the server builds exactly what
the transports parse:

- the **error envelope** ``{"error": {"code", "message", "details"}}`` of a failed call
  (and of the last line of a stream that failed midway);
- **NDJSON** streams: one JSON model per line;
- **channel frames** on a WebSocket: binary frames carry bytes, text frames JSON control
  messages; a refusal is an ``error`` frame, then a close code of 4000 + the status;
- **byte ranges**: `ByteRange` (end exclusive, as `objects.cat(start, end)` takes them)
  and its two HTTP spellings, ``Range: bytes=a-b`` and ``Content-Range`` (inclusive);
- `CHUNK`, the size of the pieces bytes are read, sent and written in.

Lean on purpose (json only): the SDK imports it from modules `import dxflow` loads.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from ._exceptions import ApiError, error_for_status, error_from_code

__all__ = [
    "CHUNK",
    "NDJSON",
    "ByteRange",
    "close_code",
    "content_range",
    "decode_frame",
    "encode_frame",
    "envelope",
    "envelope_bytes",
    "error_frame",
    "error_from_envelope",
    "error_from_reply",
    "hello",
    "ndjson_item",
    "ndjson_lines",
    "parse_content_range",
    "parse_range",
    "refusal_frame",
]

CHUNK = 4 << 20
"""Bytes per read, send and write of a transfer: big enough that per-chunk costs (a
thread hop, an ASGI message, a syscall) vanish next to the copy, small enough to keep
memory flat."""

NDJSON = "application/x-ndjson"


class _Model(Protocol):
    def model_dump_json(self) -> str: ...


# -- the error envelope ------------------------------------------------------------------


def envelope(error: ApiError) -> dict[str, Any]:
    """The envelope of `error`, as a JSON-ready dict."""
    return {"error": error.to_dict()}


def envelope_bytes(error: ApiError, code: str | None = None) -> bytes:
    """The envelope as JSON bytes; `code` in place of the error's own (a proxy's 502)."""
    body = envelope(error)
    if code is not None:
        body["error"]["code"] = code
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def error_from_envelope(payload: Any) -> ApiError | None:
    """The error an envelope names (the same class, rebuilt from its code), or None when
    `payload` is not an envelope."""
    if not isinstance(payload, dict) or not isinstance(payload.get("error"), dict):
        return None
    error = payload["error"]
    code, message = error.get("code"), error.get("message")
    if not isinstance(code, str) or not isinstance(message, str):
        return None
    details = error.get("details")
    return error_from_code(code, message, details if isinstance(details, dict) else None)


def error_from_reply(status: int, body: bytes, reason: str = "") -> ApiError:
    """The error of a failed HTTP answer: from its envelope, or (a proxy, the HTTP layer
    itself, a body-less HEAD) from its status alone."""
    try:
        error = error_from_envelope(json.loads(body)) if body else None
    except (ValueError, RecursionError):
        error = None
    if error is not None:
        return error
    text = body.decode(errors="replace").strip()[:200] or reason or "no body"
    return error_for_status(status, f"the engine answered HTTP {status}: {text}")


# -- NDJSON streams ----------------------------------------------------------------------


async def ndjson_lines(items: AsyncIterator[_Model]) -> AsyncIterator[bytes]:
    """Each item as one line. Headers are gone once the first line is out, so a failure
    midway travels as a last line holding the envelope an error response carries."""
    try:
        async for item in items:
            yield item.model_dump_json().encode() + b"\n"
    except ApiError as error:
        yield envelope_bytes(error) + b"\n"


def ndjson_item(line: str) -> dict[str, Any] | None:
    """The JSON object of one line (None for a blank one); an envelope line raises its
    error."""
    if not line.strip():
        return None
    item = json.loads(line)
    error = error_from_envelope(item)
    if error is not None:
        raise error
    if not isinstance(item, dict):
        raise ValueError(f"a stream line is not a JSON object: {line[:80]!r}")
    return item


# -- channel frames ----------------------------------------------------------------------

Message = bytes | dict[str, Any]
"""What a channel carries: bytes (terminal output or input) or a control message."""


def encode_frame(message: Message) -> bytes | str:
    """Bytes travel as a binary frame, a control message as a JSON text frame."""
    return message if isinstance(message, bytes) else json.dumps(message)


def decode_frame(frame: bytes | str) -> Message:
    """The message of a frame; ValueError when a text frame is not a JSON object."""
    if isinstance(frame, bytes):
        return frame
    try:
        message = json.loads(frame)
    except RecursionError:
        raise ValueError("a control message nested too deep") from None
    if not isinstance(message, dict):
        raise ValueError("a control message must be a JSON object")
    return message


def error_frame(error: ApiError) -> str:
    """The frame that tells a channel's client why it was refused or ended."""
    return json.dumps({"type": "error", **error.to_dict()})


def refusal_frame(reason: str) -> str:
    """The frame that refuses one message of the client (the channel stays open)."""
    return json.dumps({"type": "error", "error": reason})


def close_code(error: ApiError) -> int:
    """The WebSocket close code of a refusal (browsers cannot read a handshake's status)."""
    return 4000 + error.status


def hello(frame: bytes | str) -> dict[str, Any]:
    """The first frame of a channel: its hello, or the error that refused the channel."""
    message = decode_frame(frame)
    if not isinstance(message, dict):
        raise ValueError("a channel must open with a control message")
    if message.get("type") == "error" and "code" in message:
        error = error_from_envelope({"error": message})
        if error is not None:
            raise error
    return message


# -- byte ranges -------------------------------------------------------------------------

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True)
class ByteRange:
    """Bytes `start` to `end` of a file, end exclusive (None: to the end of the file).

    The one form a range takes from `objects.cat(start, end)` down to the read; HTTP's
    inclusive spellings are made and read here only.
    """

    start: int = 0
    end: int | None = None

    @classmethod
    def of(cls, start: int | None, end: int | None) -> ByteRange | None:
        """The range of `cat`-style arguments; None when neither is given (everything)."""
        if start is None and end is None:
            return None
        return cls(start or 0, end)

    @property
    def length(self) -> int | None:
        return None if self.end is None else max(self.end - self.start, 0)

    def header(self) -> str:
        """The `Range` request header."""
        last = "" if self.end is None else str(max(self.end - 1, 0))
        return f"bytes={self.start}-{last}"


def parse_range(header: str | None, if_range: str | None = None) -> ByteRange | int | None:
    """The one byte range of a `Range` header, or a suffix length (`bytes=-N`: an int).

    Anything else (several ranges, another unit, garbage, a date in If-Range) is None:
    RFC 9110 lets a server ignore it and send the whole content with 200.
    """
    match = _RANGE.match(header.replace(" ", "")) if header else None
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    if if_range is not None and not if_range.startswith('"'):
        return None  # a date validator: only entity tags are honoured
    first, last = match.groups()
    if not first:
        return int(last)
    return ByteRange(int(first), int(last) + 1 if last else None)


def content_range(start: int, end: int, total: int) -> str:
    """The `Content-Range` of bytes `start` to `end` (exclusive) of `total`."""
    return f"bytes {start}-{max(end - 1, start)}/{total}"


def parse_content_range(header: str | None) -> tuple[int, int | None] | None:
    """Where a partial answer starts and the whole file's size (None if unknown)."""
    if not header or not header.startswith("bytes ") or "/" not in header:
        return None
    span, _, whole = header[6:].partition("/")
    first = span.partition("-")[0]
    if not first.isdigit():
        return None
    return int(first), int(whole) if whole.isdigit() else None
