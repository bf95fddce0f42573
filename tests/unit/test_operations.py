"""The operation table, the core's handlers and the server's routes match one to one."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from dxflow._core import EngineCore
from dxflow._operations import OPERATIONS
from dxflow_server._app import META_ROUTES

from ..conftest import RestClient


def test_every_operation_has_exactly_one_handler(core: EngineCore) -> None:
    assert core.dispatcher.handles() == set(OPERATIONS)


def test_every_operation_has_exactly_one_route_and_no_route_is_extra(app: Starlette) -> None:
    routes = [r for r in app.routes if isinstance(r, Route)]
    by_name = {r.name: r for r in routes if r.name in OPERATIONS}
    sockets = {r.name: r for r in app.routes if isinstance(r, WebSocketRoute)}
    assert set(by_name) | set(sockets) == set(OPERATIONS)
    for name, op in OPERATIONS.items():
        if op.kind == "channel":  # a WebSocket: GET with an upgrade
            assert name not in by_name and sockets[name].path == op.path, name
            continue
        route = by_name[name]
        assert route.path == op.path, name
        assert op.method in (route.methods or set()), name
    extra = {r.path for r in routes if r.name not in OPERATIONS}
    assert extra == META_ROUTES


def test_routes_are_unique_per_method_and_path() -> None:
    keys = [(op.method, op.path) for op in OPERATIONS.values()]
    assert len(keys) == len(set(keys))


def test_table_rows_are_consistent() -> None:
    for op in OPERATIONS.values():
        # A download answers with bytes, a channel with a WebSocket; the rest with a model.
        assert (op.response is None) == (op.kind in ("download", "channel")), op.name
        if op.path_params:
            assert op.request is not None, op.name
            for name in op.path_params:
                assert name in op.request.model_fields, (op.name, name)
        if op.mutating:  # only a share link, the credential itself, writes without a key
            assert not op.public or op.path.startswith("/s/"), op.name
        if op.method == "GET":
            assert not op.mutating, op.name
        if op.target is not None:  # a field, or a property derived from the fields
            assert op.request is not None, op.name
            named = op.target in op.request.model_fields
            assert named or isinstance(getattr(op.request, op.target, None), property), op.name
        if op.writes_when is not None:
            assert op.request is not None and op.writes_when in op.request.model_fields, op.name
        for field, needed in op.also_requires:  # a field the dispatcher can read
            assert not op.public and op.request is not None, op.name
            assert field in op.request.model_fields and needed != op.permission, op.name
        # Share links live outside /api: short, and served without credentials.
        assert op.path.startswith("/api/") or (op.public and op.path.startswith("/s/")), op.name


def test_openapi_document_lists_every_operation(rest: RestClient) -> None:
    document = rest.get("/api/openapi.json").json()
    seen = {
        entry["operationId"]: (method.upper(), path)
        for path, methods in document["paths"].items()
        for method, entry in methods.items()
    }
    assert seen == {name: (op.method, op.path) for name, op in OPERATIONS.items()}
    assert document["paths"]["/api/health"]["get"]["security"] == []
    assert document["paths"]["/api/keys"]["post"]["x-dxflow-permission"] == "MASTER"
