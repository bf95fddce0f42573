"""The Starlette application: generated operation routes plus the OpenAPI document.

Its lifespan owns the core's background work: started when the server starts, stopped
(cancelled and awaited, bounded) when it shuts down.

Proxied requests (`/p/{name}/...`, or a Host `{name}.{domain}`) never reach Starlette:
`EngineApp` hands them to the proxies' data plane first, outside `BodyGuard`'s caps (a
proxied upload is streamed to its target, whatever its size). Most of them do not even
reach this app: the server's protocol hands `/p/` connections to the data plane's fast
path (see `_guard.py`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dxflow._core import EngineCore
from dxflow._core._proxies._http import ProxyApp
from dxflow._operations import OPENAPI_PATH

from ._bridges import FastApp, forwarded, relay
from ._channels import channel_routes
from ._errors import EXCEPTION_HANDLERS
from ._guard import BodyGuard
from ._openapi import openapi_document
from ._routes import operation_routes
from ._tus import tus_routes

__all__ = ["META_ROUTES", "EngineApp", "create_app"]

META_ROUTES = {OPENAPI_PATH}


class EngineApp(Starlette):
    """The engine's app: the proxies' requests first, then the API's routes."""

    proxy_app: ProxyApp | None = None
    fast_app: FastApp | None = None
    """What the server's fast path serves: proxies, and calls relayed to agents."""
    core: EngineCore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        proxies = self.proxy_app
        if proxies is not None and scope["type"] in ("http", "websocket"):
            found = proxies.resolve(scope)
            if found is not None:
                await proxies.dispatch(found, scope, receive, send)
                return
            agent = forwarded(scope)
            if agent is not None and self.core is not None:
                if not agent[1].startswith(b"/api/auth/"):
                    await relay(self.core, scope, receive, send)
                    return
                # A bridged engine's handshake is the master's: the caller's key is here.
                scope = {**scope, "path": agent[1].decode("latin-1"), "raw_path": agent[1]}
        await super().__call__(scope, receive, send)


def create_app(core: EngineCore) -> EngineApp:
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

    proxy_app = ProxyApp(core.proxies)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if core.bridge_agent.settings is not None:  # a joined agent dials while it serves
            core.lifecycle.task("bridges.agent", core.bridge_agent.run)
        try:
            async with core.lifecycle.running():
                yield
        finally:
            proxy_app.close()  # the keep-alive connections to targets

    app = EngineApp(
        routes=routes,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(BodyGuard)],
        lifespan=lifespan,
    )
    app.state.core = core
    app.proxy_app = proxy_app
    app.fast_app = FastApp(proxy_app, core)
    app.core = core
    return app
