"""The Starlette application: generated operation routes plus the OpenAPI document.

Its lifespan owns the core's background work: started when the server starts, stopped
(cancelled and awaited, bounded) when it shuts down.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dxflow._core import EngineCore
from dxflow._operations import OPENAPI_PATH

from ._channels import channel_routes
from ._errors import EXCEPTION_HANDLERS
from ._guard import BodyGuard
from ._openapi import openapi_document
from ._routes import operation_routes
from ._tus import tus_routes

__all__ = ["META_ROUTES", "create_app"]

META_ROUTES = {OPENAPI_PATH}


def create_app(core: EngineCore) -> Starlette:
    # Made on first request, not at boot: it is a third of the time to healthy.
    document: dict[str, object] = {}

    async def openapi(request: Request) -> Response:
        if not document:
            document.update(openapi_document())
        return JSONResponse(document)

    routes = [
        *operation_routes(core),
        *tus_routes(core),
        *channel_routes(core),
        Route(OPENAPI_PATH, openapi, methods=["GET"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with core.lifecycle.running():
            yield

    app = Starlette(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(BodyGuard)],
        lifespan=lifespan,
    )
    app.state.core = core
    return app
