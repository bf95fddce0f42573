"""Routes generated from the operation table: one endpoint per operation."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from dxflow._core import Context, EngineCore
from dxflow._exceptions import InvalidRequest, RequestTimeout
from dxflow._limits import PUBLIC_BODY_MAX, too_large
from dxflow._operations import OPERATIONS, Operation
from dxflow._wire import NDJSON, ndjson_lines

from ._auth import context_for
from ._files import blob_response, client_stream, range_params, upload_size

__all__ = ["operation_routes"]

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


_COMPOSE_OPS = frozenset({"workflows.create", "workflows.update"})
_MAX_DEPTH = 64
# Bigger bodies are parsed and walked in a worker thread. json.loads holds the GIL while
# it runs (about 40 ms for a 16 MiB string), so the size limits bound that part; the
# depth walk is Python code and lets the event loop run between its steps.
_THREAD_PARSE = 256 << 10


def _body_limit(core: EngineCore, op: Operation) -> tuple[int, str | None]:
    """The most a body of `op` may hold, and the setting that says so."""
    if op.public:
        return PUBLIC_BODY_MAX, None
    if op.name in _COMPOSE_OPS:
        return core.limits.compose_body, "compose_body_max"
    return core.limits.json_body, "json_body_max"


async def _read_body(request: Request, limit: int, setting: str | None) -> bytes:
    """The body, refused (413) from its declared length, or as soon as it passes `limit`."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large(f"request body of {declared} bytes", limit, setting)
    chunks, total = [], 0
    async for chunk in client_stream(request):
        total += len(chunk)
        if total > limit:  # chunked, or a Content-Length that lied
            raise too_large("request body", limit, setting)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _parse_json(body: bytes) -> Any:
    try:
        payload = json.loads(body)
    except RecursionError:
        payload = None  # nested past the interpreter's limit: deeper than ours too
    except ValueError as exc:  # invalid JSON or invalid UTF-8
        raise InvalidRequest(f"invalid request: the body is not valid JSON ({exc})") from None
    if payload is None or _too_deep(payload):
        raise InvalidRequest(
            f"invalid request: the body nests deeper than {_MAX_DEPTH} levels"
        ) from None
    return payload


async def _payload(request: Request, op: Operation, core: EngineCore) -> dict[str, Any]:
    if op.body_in_query:
        query = request.query_params
        empty = next((key for key, value in query.multi_items() if not value), None)
        if empty is not None:  # `?x=` is neither a value nor its absence: say so
            raise InvalidRequest(f"invalid request: {empty}: empty value (leave the parameter out)")
        payload: dict[str, Any] = {
            key: values if len(values := query.getlist(key)) > 1 else values[0] for key in query
        }
    else:
        if op.public:  # a stranger's body: it has the head's deadline, not for ever
            with anyio.move_on_after(core.limits.header_timeout) as scope:
                body = await _read_body(request, *_body_limit(core, op))
            if scope.cancelled_caught:
                raise RequestTimeout(
                    f"the body did not arrive within {core.limits.header_timeout:g} s"
                    " (engine setting header_timeout)"
                )
        else:
            body = await _read_body(request, *_body_limit(core, op))
        if not body:
            payload = {}
        elif len(body) > _THREAD_PARSE:
            payload = await anyio.to_thread.run_sync(_parse_json, body)
        else:
            payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise InvalidRequest("invalid request: (body): must be a JSON object")
    for name, value in request.path_params.items():
        if name in payload:
            raise InvalidRequest(f"invalid request: {name}: given in both the path and the body")
        payload[name] = value
    return payload


def _json(model: Any) -> bytes:
    return bytes(model.__pydantic_serializer__.to_json(model))


def _endpoint(core: EngineCore, op: Operation) -> Endpoint:
    dispatcher = core.dispatcher

    def caller(request: Request) -> Context:
        # The caller is checked before a byte of the body is read: a stranger, or a
        # key without the permission, never gets to make the engine read or parse.
        ctx = context_for(request, core, op)
        dispatcher.authorize(ctx, op)
        return ctx

    async def call(request: Request) -> Response:
        ctx = caller(request)
        result = await dispatcher.call(ctx, op, await _payload(request, op, core))
        # Bytes straight from the serializer: no str copy of a large answer (ranges).
        return Response(_json(result), media_type="application/json")

    async def stream(request: Request) -> Response:
        ctx = caller(request)
        # Refusals (401, 403, 422) raise here, with their status; the items are then
        # produced in the response's own task, from first to last.
        items = dispatcher.stream(ctx, op, await _payload(request, op, core))
        return StreamingResponse(ndjson_lines(items), media_type=NDJSON)

    async def download(request: Request) -> Response:
        ctx = caller(request)
        payload = await _payload(request, op, core)
        span, suffix = range_params(request)
        blob = await dispatcher.call(ctx, op, {**payload, **span})
        return await blob_response(request, blob, suffix)

    async def upload(request: Request) -> Response:
        ctx = caller(request)
        payload = await _payload(request, op, core)
        assert op.request is not None
        payload = {**upload_size(request, op.request.model_fields), **payload}
        result = await dispatcher.call(ctx, op, payload, body=client_stream(request))
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
