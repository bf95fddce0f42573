"""WebSocket routes for the `channel` operations (a shell attach).

Binary frames carry bytes (terminal output with its offset; input), text frames carry
JSON control messages. A refused or failed attach is accepted, told why in an `error`
message with the error envelope's code, then closed with 4000 + the HTTP status
(4401, 4403, 4404, ...): browsers cannot read the status of a refused handshake.
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from dxflow._core import EngineCore
from dxflow._core._groups import task_group
from dxflow._exceptions import ApiError, InvalidRequest, PermissionDenied
from dxflow._operations import OPERATIONS, Operation
from dxflow._wire import close_code, decode_frame, encode_frame, error_frame, refusal_frame

from ._auth import context_for, cross_site_origin
from ._errors import error_response

__all__ = ["channel_routes"]


def _payload(websocket: WebSocket) -> dict[str, Any]:
    payload: dict[str, Any] = {k: v for k, v in websocket.query_params.items() if k != "token"}
    if "offset" in payload:
        try:
            payload["offset"] = int(payload["offset"])
        except ValueError:
            raise InvalidRequest("offset: must be an integer") from None
    return {**payload, **websocket.path_params}


async def _outbound(websocket: WebSocket, link: Any) -> None:
    async for message in link.messages():
        frame = encode_frame(message)
        if isinstance(frame, bytes):
            await websocket.send_bytes(frame)
        else:
            await websocket.send_text(frame)


async def _inbound(websocket: WebSocket, link: Any) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        frame = message.get("bytes")
        if frame is None:
            frame = message.get("text")
        if frame is None:
            continue
        try:
            await link.deliver(decode_frame(frame))
        except (ValueError, AttributeError) as refusal:  # not a JSON object, or not one of ours
            await websocket.send_text(refusal_frame(str(refusal)))


def _endpoint(core: EngineCore, op: Operation) -> Any:
    async def channel(websocket: WebSocket) -> None:
        origin = cross_site_origin(websocket)
        if origin is not None:  # a page of another site, riding the console's cookie
            await _deny(websocket, PermissionDenied(
                f"WebSocket from another site refused: Origin {origin} is not this engine"
                f" ({websocket.headers.get('host', '?')})", origin=origin))  # fmt: skip
            return
        try:
            ctx = context_for(websocket, core, op, websocket=True)
            async with core.dispatcher.channel(ctx, op, _payload(websocket)) as link:
                await websocket.accept()
                await _pump(websocket, link)
        except ApiError as error:
            await _refuse(websocket, error)
            return
        except (WebSocketDisconnect, OSError, EOFError):
            return
        with contextlib.suppress(RuntimeError, OSError):  # the client may have gone
            await websocket.close()

    channel.__name__ = op.name.replace(".", "_")
    return channel


async def _pump(websocket: WebSocket, link: Any) -> None:
    async with task_group() as group:

        async def pump_out() -> None:
            await _outbound(websocket, link)
            group.cancel_scope.cancel()  # the session ended its side

        group.start_soon(pump_out)
        await _inbound(websocket, link)
        group.cancel_scope.cancel()  # the client left


async def _deny(websocket: WebSocket, error: ApiError) -> None:
    """Refuse the handshake itself with an HTTP status (the socket is never opened)."""
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        if "websocket.http.response" in websocket.scope.get("extensions", {}):
            await websocket.send_denial_response(error_response(error))
        else:
            await websocket.close(code=1008)  # the server answers the handshake with 403


async def _refuse(websocket: WebSocket, error: ApiError) -> None:
    with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
        if websocket.client_state == WebSocketState.CONNECTING:
            await websocket.accept()
        await websocket.send_text(error_frame(error))
        await websocket.close(code=close_code(error), reason=error.code)


def channel_routes(core: EngineCore) -> list[WebSocketRoute]:
    return [
        WebSocketRoute(op.path, _endpoint(core, op), name=op.name)
        for op in OPERATIONS.values()
        if op.kind == "channel" and not op.custom_route
    ]
