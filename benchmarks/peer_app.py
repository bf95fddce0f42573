"""The peer of the server benchmarks: a bare Starlette app served by uvicorn.

It answers the same JSON as dxflow's `/api/health` and `/api/ping`, with no engine
behind it; the only "authentication" is a constant-time comparison of the bearer token
with `PEER_TOKEN`, so that both servers refuse a request without the header.

    python -m uvicorn --app-dir benchmarks peer_app:app --uds /tmp/x.sock --lifespan off
"""

from __future__ import annotations

import hmac
import os
from datetime import UTC, datetime

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

VERSION = os.environ.get("PEER_VERSION", "0.0.0")
ENGINE_ID = os.environ.get("PEER_ENGINE_ID", "dxf-0000000000000000")
TOKEN = os.environ.get("PEER_TOKEN", "")


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok", "version": VERSION})


async def ping(request: Request) -> Response:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip(), TOKEN):
        return JSONResponse({"error": {"code": "unauthenticated"}}, status_code=401)
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return JSONResponse({"engine_id": ENGINE_ID, "identity": "master", "time": now})


app = Starlette(
    routes=[
        Route("/api/health", health, methods=["GET"]),
        Route("/api/ping", ping, methods=["GET"]),
    ]
)
