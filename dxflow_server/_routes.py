"""Routes generated from the operation table: one endpoint per operation."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dxflow._core import EngineCore
from dxflow._exceptions import ApiError, InvalidRequest
from dxflow._operations import OPERATIONS, Operation

from ._auth import context_for
from ._files import blob_response, range_params, upload_size

__all__ = ["operation_routes"]

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


async def _payload(request: Request, op: Operation) -> dict[str, Any]:
    if op.body_in_query:
        query = request.query_params
        empty = next((key for key, value in query.multi_items() if not value), None)
        if empty is not None:  # `?x=` is neither a value nor its absence: say so
            raise InvalidRequest(f"invalid request: {empty}: empty value (leave the parameter out)")
        payload: dict[str, Any] = {
            key: values if len(values := query.getlist(key)) > 1 else values[0] for key in query
        }
    else:
        body = await request.body()
        try:
            payload = json.loads(body) if body else {}
        except ValueError as exc:
            raise InvalidRequest(f"invalid request: the body is not valid JSON ({exc})") from None
        if not isinstance(payload, dict):
            raise InvalidRequest("invalid request: (body): must be a JSON object")
    for name, value in request.path_params.items():
        if name in payload:
            raise InvalidRequest(f"invalid request: {name}: given in both the path and the body")
        payload[name] = value
    return payload


async def _ndjson(items: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    # Headers are gone once the first line is out, so a failure mid-stream
    # travels as a last line holding the same envelope an error response carries.
    try:
        async for item in items:
            yield item.model_dump_json().encode() + b"\n"
    except ApiError as error:
        yield json.dumps({"error": error.to_dict()}).encode() + b"\n"


def _endpoint(core: EngineCore, op: Operation) -> Endpoint:
    dispatcher = core.dispatcher

    async def call(request: Request) -> Response:
        ctx = context_for(request, core, op)
        result = await dispatcher.call(ctx, op, await _payload(request, op))
        return Response(result.model_dump_json(), media_type="application/json")

    async def stream(request: Request) -> Response:
        ctx = context_for(request, core, op)
        # Refusals (401, 403, 422) raise here, with their status; the items are then
        # produced in the response's own task, from first to last.
        items = dispatcher.stream(ctx, op, await _payload(request, op))
        return StreamingResponse(_ndjson(items), media_type="application/x-ndjson")

    async def download(request: Request) -> Response:
        ctx = context_for(request, core, op)
        payload = await _payload(request, op)
        span, suffix = range_params(request)
        blob = await dispatcher.call(ctx, op, {**payload, **span})
        return await blob_response(request, blob, suffix)

    async def upload(request: Request) -> Response:
        ctx = context_for(request, core, op)
        payload = await _payload(request, op)
        assert op.request is not None
        payload = {**upload_size(request, op.request.model_fields), **payload}
        result = await dispatcher.call(ctx, op, payload, body=request.stream())
        return Response(result.model_dump_json(), media_type="application/json")

    endpoint = {"stream": stream, "download": download, "upload": upload}.get(op.kind, call)
    endpoint.__name__ = op.name.replace(".", "_")
    return endpoint


def operation_routes(core: EngineCore) -> list[Route]:
    return [
        Route(op.path, _endpoint(core, op), methods=[op.method], name=op.name)
        for op in OPERATIONS.values()
        if op.kind != "channel" and not op.custom_route
    ]
