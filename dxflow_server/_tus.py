"""The tus 1.0 routes: the `uploads.*` operations, spoken in tus headers.

tus carries its arguments in headers (Upload-Length, Upload-Offset, Upload-Metadata,
Upload-Checksum) and answers with headers and 201/204 statuses, so these four routes are
written by hand; they still go through the dispatcher like every other call. Any
third-party tus client works against the `uploads.create` path with a bearer token
header. Paths and methods are the operation table's.
"""

from __future__ import annotations

import base64
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dxflow import _operations as ops
from dxflow._core import CHECKSUM_ALGORITHMS, Context, EngineCore
from dxflow._exceptions import ApiError, InvalidRequest
from dxflow._models import UploadInfo
from dxflow._operations import Operation

from ._auth import context_for
from ._errors import error_response
from ._files import client_stream

__all__ = ["tus_routes"]

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-defer-length,termination,checksum,expiration"
_BASE = {"Tus-Resumable": VERSION, "Cache-Control": "no-store"}


class _PreconditionFailed(InvalidRequest):
    status = 412


def _metadata(header: str | None) -> dict[str, str]:
    """Upload-Metadata: `key base64value,key2 base64value2` (a value may be absent)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in (header or "").split(","))):
        key, _, value = item.partition(" ")
        try:
            pairs[key] = base64.b64decode(value, validate=True).decode() if value else ""
        except ValueError:  # binascii.Error, non-ASCII text and bad UTF-8 alike
            raise InvalidRequest(f"Upload-Metadata: the value of {key!r} is not base64") from None
    return pairs


def _number(request: Request, name: str) -> int | None:
    value = request.headers.get(name)
    if value is None:
        return None
    if not value.isdigit():
        raise InvalidRequest(f"{name}: {value!r} is not a non-negative integer")
    return int(value)


def _headers(info: UploadInfo) -> dict[str, str]:
    headers = {**_BASE, "Upload-Offset": str(info.offset),
               "Upload-Expires": format_datetime(info.expires_at, usegmt=True)}  # fmt: skip
    if info.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(info.length)
    return headers


def _create_params(request: Request) -> dict[str, Any]:
    metadata = _metadata(request.headers.get("upload-metadata"))
    length = _number(request, "upload-length")
    if length is None and request.headers.get("upload-defer-length") != "1":
        raise InvalidRequest("give Upload-Length, or Upload-Defer-Length: 1")
    path = metadata.get("path") or metadata.get("filename")
    if not path:
        raise InvalidRequest("Upload-Metadata must name the destination: path (or filename)")
    overwrite = metadata.get("overwrite", "") in ("1", "true")
    params: dict[str, Any] = {"path": path, "length": length, "metadata": metadata,
                              "overwrite": overwrite}  # fmt: skip
    if "checksum" in metadata:
        params["checksum"] = metadata["checksum"]
    return params


def tus_routes(core: EngineCore) -> list[Route]:
    dispatcher = core.dispatcher

    def admitted(request: Request, op: Operation) -> Context:
        """The caller, checked first (401/403), then the protocol version (412)."""
        ctx = context_for(request, core, op)
        dispatcher.authorize(ctx, op)
        if request.headers.get("tus-resumable") != VERSION:
            raise _PreconditionFailed(f"Tus-Resumable: {VERSION} is required")
        return ctx

    async def collection(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={
                **_BASE, "Tus-Version": VERSION, "Tus-Extension": EXTENSIONS,
                "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS)})  # fmt: skip
        try:
            op = ops.uploads.CREATE
            ctx = admitted(request, op)
            info = await dispatcher.call(ctx, op, _create_params(request))
        except ApiError as error:
            return _tus_error(error)
        # Relative to where the engine is mounted (a bridge or a proxy's sub-path).
        resource = ops.uploads.STATUS.path.replace("{id}", info.id)
        location = request.scope.get("root_path", "") + resource
        return Response(status_code=201, headers={**_headers(info), "Location": location})

    async def resource(request: Request) -> Response:
        try:
            upload_id = request.path_params["id"]
            if request.method == "PATCH":
                return await _append(request, upload_id)
            op = ops.uploads.STATUS if request.method == "HEAD" else ops.uploads.DELETE
            info = await dispatcher.call(admitted(request, op), op, {"id": upload_id})
        except ApiError as error:
            return _tus_error(error)
        return Response(
            status_code=200 if op is ops.uploads.STATUS else 204, headers=_headers(info)
        )

    async def _append(request: Request, upload_id: str) -> Response:
        op = ops.uploads.APPEND
        ctx = admitted(request, op)
        if request.headers.get("content-type") != "application/offset+octet-stream":
            return Response("Content-Type must be application/offset+octet-stream",
                            status_code=415, headers=_BASE)  # fmt: skip
        offset = _number(request, "upload-offset")
        if offset is None:
            raise InvalidRequest("Upload-Offset is required")
        params: dict[str, Any] = {"id": upload_id, "offset": offset,
                                  "length": _number(request, "upload-length")}  # fmt: skip
        if "upload-checksum" in request.headers:
            params["checksum"] = request.headers["upload-checksum"]
        info = await dispatcher.call(ctx, op, params, body=client_stream(request))
        return Response(status_code=204, headers=_headers(info))

    create = ops.uploads.CREATE
    return [
        Route(create.path, collection, methods=[create.method, "OPTIONS"], name=create.name),
        *(Route(op.path, resource, methods=[op.method], name=op.name)
          for op in (ops.uploads.STATUS, ops.uploads.APPEND, ops.uploads.DELETE)),
    ]  # fmt: skip


def _tus_error(error: ApiError) -> Response:
    response = error_response(error)
    response.headers["Tus-Resumable"] = VERSION
    if error.code == "conflict" and "offset" in error.details:
        response.headers["Upload-Offset"] = str(error.details["offset"])
    return response
