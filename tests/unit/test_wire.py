"""The wire forms both ends share: what the server builds, the transports read back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import anyio
import pytest

from dxflow import _exceptions as errors
from dxflow._exceptions import ApiError, NotFound, TooManyRequests
from dxflow._models import Pong
from dxflow._wire import (
    ByteRange,
    close_code,
    content_range,
    decode_frame,
    encode_frame,
    envelope,
    envelope_bytes,
    error_frame,
    error_from_envelope,
    error_from_reply,
    hello,
    ndjson_item,
    ndjson_lines,
    parse_content_range,
    parse_range,
    refusal_frame,
)

API_ERRORS = [c for c in errors._subclasses(ApiError)[1:] if c.__module__ == errors.__name__]


@pytest.mark.parametrize("cls", API_ERRORS, ids=lambda c: c.__name__)
def test_every_error_class_travels_as_itself(cls: type[ApiError]) -> None:
    sent = cls("it failed", path="a/b")
    for received in (
        error_from_envelope(json.loads(envelope_bytes(sent))),
        error_from_reply(sent.status, envelope_bytes(sent)),
    ):
        assert type(received) is cls
        assert (received.message, received.details) == ("it failed", {"path": "a/b"})


def test_answers_without_an_envelope_are_named_by_their_status() -> None:
    error = error_from_reply(502, b"<html>Bad Gateway</html>", "Bad Gateway")
    assert type(error) is ApiError and "HTTP 502: <html>Bad Gateway" in error.message
    assert type(error_from_reply(404, b"", "Not Found")) is NotFound  # a HEAD has no body
    assert type(error_from_reply(429, b'{"error": "nope"}')) is TooManyRequests
    assert error_from_envelope({"error": {"code": 5}}) is None
    assert error_from_envelope([1]) is None


def test_ndjson_lines_end_with_the_envelope_of_a_failure() -> None:
    async def items() -> AsyncIterator[Pong]:
        yield Pong(identity="a", engine_id="e", time=datetime.now(UTC))
        raise NotFound("went away", name="x")

    async def collect() -> list[bytes]:
        return [line async for line in ndjson_lines(items())]

    first, last = anyio.run(collect)
    assert first.endswith(b"\n") and last.endswith(b"\n")
    assert ndjson_item(first.decode()) == json.loads(first)
    assert ndjson_item("   ") is None
    with pytest.raises(NotFound, match="went away") as caught:
        ndjson_item(last.decode())
    assert caught.value.details == {"name": "x"}
    assert json.loads(last) == envelope(NotFound("went away", name="x"))


def test_channel_frames() -> None:
    assert encode_frame(b"\x00out") == b"\x00out" and decode_frame(b"\x00out") == b"\x00out"
    control = {"type": "resize", "rows": 10}
    assert decode_frame(encode_frame(control)) == control
    for bad in ("[1]", "nope", "[" * 100_000):
        with pytest.raises(ValueError):
            decode_frame(bad)
    assert json.loads(refusal_frame("no")) == {"type": "error", "error": "no"}
    assert hello(json.dumps({"type": "hello", "mode": "rw"}))["mode"] == "rw"
    refused = NotFound("no session 't1'", name="t1")
    with pytest.raises(NotFound, match="no session") as caught:
        hello(error_frame(refused))
    assert caught.value.details == {"name": "t1"} and close_code(refused) == 4404


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", ByteRange(0, 100)),
        ("bytes=100-", ByteRange(100, None)),
        ("bytes = 5 - 5", ByteRange(5, 6)),
        ("bytes=-500", 500),
        ("bytes=0-1,5-6", None),
        ("items=0-1", None),
        ("bytes=-", None),
        (None, None),
    ],
)
def test_range_headers(header: str | None, expected: object) -> None:
    assert parse_range(header) == expected


def test_a_byte_range_round_trips_through_its_http_spellings() -> None:
    for span in (ByteRange(0, 1), ByteRange(10, 20), ByteRange(7, None)):
        assert parse_range(span.header()) == span
    assert ByteRange(0, 0).header() == "bytes=0-0"  # as before: the server says 416
    assert ByteRange.of(None, None) is None and ByteRange.of(None, 5) == ByteRange(0, 5)
    assert ByteRange(10, 20).length == 10 and ByteRange(3).length is None
    assert parse_range("bytes=0-9", if_range="Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert content_range(10, 20, 100) == "bytes 10-19/100"
    assert parse_content_range(content_range(10, 20, 100)) == (10, 100)
    assert parse_content_range("bytes 0-0/*") == (0, None)
    assert parse_content_range("bytes */100") is None and parse_content_range(None) is None
