"""Bytes over HTTP: downloads with Range, ETag and HEAD; uploads streamed from the body."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse

from dxflow._core import Blob
from dxflow._exceptions import InvalidRequest

__all__ = ["blob_response", "client_stream", "range_params", "upload_size"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SMALL = 1 << 20


def range_params(request: Request) -> tuple[dict[str, int], int | None]:
    """The one byte range of a `Range` header as start/end, or a suffix length.

    Anything else (several ranges, another unit, garbage, a stale If-Range) is ignored,
    as RFC 9110 allows: the whole content is sent with 200.
    """
    header = request.headers.get("range")
    match = _RANGE.match(header.replace(" ", "")) if header else None
    if match is None or (not match.group(1) and not match.group(2)):
        return {}, None
    if_range = request.headers.get("if-range")
    if if_range is not None and not if_range.startswith('"'):
        return {}, None  # a date validator: we only honour entity tags
    first, last = match.groups()
    if not first:
        return {}, int(last)
    params = {"start": int(first)}
    if last:
        params["end"] = int(last) + 1  # HTTP ranges are inclusive, ours are not
    return params, None


def _disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


async def _in_thread(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    # Reads are blocking: each chunk is read in a worker thread, 4 MiB at a time.
    while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
        yield chunk


async def blob_response(request: Request, blob: Blob, suffix: int | None) -> Response:
    headers = {"Content-Disposition": _disposition(blob.filename)}
    if blob.generate is not None:  # a directory, zipped as it streams: size unknown
        if request.method == "HEAD":
            head = Response(headers=headers, media_type=blob.media_type)
            del head.headers["content-length"]  # unknown until the zip is made
            return head
        blob.claimed()  # a refusal still has its status: nothing is sent yet
        body = _in_thread(blob.chunks())
        return StreamingResponse(body, media_type=blob.media_type, headers=headers)
    size = blob.info.size
    if suffix is not None:
        blob.start, blob.end, blob.partial = max(size - suffix, 0), size, True
    etag = blob.info.etag or ""
    if_range = request.headers.get("if-range")
    if blob.partial and if_range is not None and if_range != etag:
        blob.start, blob.end, blob.partial = 0, size, False  # changed since: send it all
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
        headers["Content-Range"] = f"bytes {blob.start}-{max(blob.end - 1, blob.start)}/{size}"
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=blob.media_type)
    blob.claimed()  # a refusal still has its status: nothing is sent yet
    if (blob.length or 0) <= _SMALL:  # one read, one send: no stream to set up
        content = b"".join(await anyio.to_thread.run_sync(list, blob.chunks()))
        return Response(content, status_code=status, headers=headers, media_type=blob.media_type)
    return StreamingResponse(
        _in_thread(blob.chunks()), status_code=status, headers=headers, media_type=blob.media_type
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
