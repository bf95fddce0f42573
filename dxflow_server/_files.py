"""Bytes over HTTP: downloads with Range, ETag and HEAD; uploads streamed from the body."""

from __future__ import annotations

from collections.abc import AsyncIterator
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from dxflow._core import Blob
from dxflow._exceptions import InvalidRequest
from dxflow._pipe import read_in_thread
from dxflow._wire import ByteRange, content_range, parse_range

__all__ = ["blob_response", "client_stream", "range_params", "upload_size"]

_SMALL = 1 << 20


def range_params(request: Request) -> tuple[dict[str, int], int | None]:
    """The request's byte range as the read's start/end, or a suffix length (see
    `parse_range`: whatever else it says is ignored and the whole content sent)."""
    span = parse_range(request.headers.get("range"), request.headers.get("if-range"))
    if span is None:
        return {}, None
    if isinstance(span, int):
        return {}, span
    return ({"start": span.start} if span.end is None else
            {"start": span.start, "end": span.end}), None  # fmt: skip


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


async def _primed(blob: Blob) -> AsyncIterator[bytes]:
    """The blob's bytes, the first chunk read already: a read that fails at once (the
    file is gone) is an error answer with its status, not a broken 200."""
    chunks = read_in_thread(blob.chunks())
    first = await anext(chunks, None)

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return body()


async def blob_response(request: Request, blob: Blob, suffix: int | None) -> Response:
    headers = {"Content-Disposition": _disposition(blob.filename)}
    if blob.generate is not None:  # a directory, zipped as it streams: size unknown
        if request.method == "HEAD":
            head = Response(headers=headers, media_type=blob.media_type)
            del head.headers["content-length"]  # unknown until the zip is made
            return head
        blob.claimed()  # a refusal still has its status: nothing is sent yet
        return StreamingResponse(await _primed(blob), media_type=blob.media_type,
                                 headers=headers)  # fmt: skip
    size = blob.info.size
    if suffix is not None:
        blob.select(ByteRange(max(size - suffix, 0), size))
    etag = blob.info.etag or ""
    if_range = request.headers.get("if-range")
    if blob.partial and if_range is not None and if_range != etag:
        blob.select(None)  # changed since: send it all
    headers.update(
        {"Accept-Ranges": "bytes", "ETag": etag, "Content-Length": str(blob.length),
         "Last-Modified": format_datetime(blob.info.modified, usegmt=True)}
    )  # fmt: skip
    if request.headers.get("if-none-match") == etag and not blob.partial:
        return Response(status_code=304, headers={"ETag": etag})
    status = 200
    if blob.partial:
        status = 206
        assert blob.end is not None
        headers["Content-Range"] = content_range(blob.start, blob.end, size)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=blob.media_type)
    blob.claimed()  # a refusal still has its status: nothing is sent yet
    if (blob.length or 0) <= _SMALL:  # one read, one send: no stream to set up
        content = b"".join(await anyio.to_thread.run_sync(list, blob.chunks()))
        return Response(content, status_code=status, headers=headers, media_type=blob.media_type)
    return StreamingResponse(
        await _primed(blob), status_code=status, headers=headers, media_type=blob.media_type
    )


def upload_size(request: Request, fields: Any) -> dict[str, int]:
    """The declared body size, for requests whose model takes one (checked on arrival)."""
    length = request.headers.get("content-length")
    if "size" in fields and length and length.isdigit():
        return {"size": int(length)}
    return {}


async def client_stream(request: Request) -> AsyncIterator[bytes]:
    """The body as it arrives; a client that leaves mid-body is its own error, not a bug."""
    try:
        async for chunk in request.stream():
            yield chunk
    except ClientDisconnect:
        raise InvalidRequest("the client disconnected before the body was complete") from None
