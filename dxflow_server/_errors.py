"""One JSON error envelope for every failure: ``{"error": {code, message, details}}``."""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match

from dxflow._exceptions import (
    ApiError,
    InternalError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    TooManyRequests,
    Unauthenticated,
)
from dxflow._wire import envelope_bytes

__all__ = ["EXCEPTION_HANDLERS", "error_response"]

log = logging.getLogger("dxflow.server")


def error_response(error: ApiError) -> Response:
    headers: dict[str, str] = {}
    if isinstance(error, TooManyRequests):
        headers["Retry-After"] = str(error.details.get("retry_after", 60))
    elif isinstance(error, Unauthenticated):
        headers["WWW-Authenticate"] = 'Bearer realm="dxflow"'
    elif isinstance(error, MethodNotAllowed):
        headers["Allow"] = str(error.details.get("allowed", ""))
    return _envelope(error, error.status, headers)


def _envelope(error: ApiError, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(envelope_bytes(error), status, headers, media_type="application/json")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


def _allowed_methods(request: Request) -> list[str]:
    # Several routes may share a path (GET and POST /api/keys): Allow lists them all.
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return sorted(methods)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    if exc.status_code == 404:
        return error_response(NotFound(f"no route {path}", path=path))
    if exc.status_code == 405:
        allowed = ", ".join(_allowed_methods(request))
        return error_response(
            MethodNotAllowed(
                f"{request.method} is not allowed on {path} (allowed: {allowed})", allowed=allowed
            )
        )
    error = ApiError(exc.detail or f"HTTP {exc.status_code}")
    return _envelope(error, exc.status_code)


async def _gone(request: Request, exc: Exception) -> Response:
    # The client left mid-request: nobody reads the answer, and it is not a bug.
    return error_response(InvalidRequest("the client disconnected before the body was complete"))


async def _crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(InternalError("internal error; the engine log has the cause"))


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    HTTPException: _http_error,
    ClientDisconnect: _gone,
    Exception: _crash,
}
