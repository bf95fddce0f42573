"""The operation table, the core's handlers and the server's routes match one to one;
the capability modules and their typed constants are the table, no more and no less."""

from __future__ import annotations

import pkgutil
import textwrap
import typing
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from dxflow import _operations
from dxflow._core import EngineCore
from dxflow._operations import CAPABILITIES, OPERATIONS, NoRequest, NoResponse, constants
from dxflow_server._app import META_ROUTES

from ..conftest import RestClient


def test_every_operation_has_exactly_one_handler(core: EngineCore) -> None:
    assert core.dispatcher.handles() == set(OPERATIONS)


def test_every_operation_has_exactly_one_route_and_no_route_is_extra(app: Starlette) -> None:
    routes = [r for r in app.routes if isinstance(r, Route)]
    by_name = {r.name: r for r in routes if r.name in OPERATIONS}
    sockets = {r.name: r for r in app.routes if isinstance(r, WebSocketRoute)}
    # Calls relayed to an agent never reach Starlette's router: the app claims them first;
    # nor do agents' links: the server's fast path takes their upgrade.
    relayed = {"bridges.forward"}
    assert set(by_name) | set(sockets) | relayed | {"bridges.link"} == set(OPERATIONS)
    for name, op in OPERATIONS.items():
        if name == "bridges.link":
            from dxflow_server._bridges import is_link

            assert is_link(op.path.encode()) and is_link(op.path.encode() + b"?x=1")
            assert not is_link(op.path.encode() + b"s")
            continue
        if name in relayed:
            from dxflow_server._bridges import forwarded

            sample = op.path.replace("{name}", "gpu-1").replace("{path}", "objects/info")
            assert forwarded({"path": sample}) == ("gpu-1", b"/api/objects/info")
            continue
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
        if op.mutating:  # only a share link or a join token, the credential itself,
            # writes without a key
            assert not op.public or op.path.startswith("/s/") or op.name == "bridges.join"
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


def _capability(module: object) -> str:
    return getattr(module, "__name__", "").rsplit(".", 1)[1]


def test_every_capability_module_is_in_the_table() -> None:
    found = {info.name for info in pkgutil.iter_modules(_operations.__path__)}
    assert {name for name in found if not name.startswith("_")} == {
        _capability(module) for module in CAPABILITIES
    }


def test_the_constants_are_the_table_no_more_no_less() -> None:
    defined = [op for module in CAPABILITIES for op in constants(module)]
    assert len({op.name for op in defined}) == len(defined), "an operation name is defined twice"
    assert defined == list(OPERATIONS.values())
    for op in defined:
        assert OPERATIONS[op.name] is op


def test_each_capability_module_holds_only_its_tag_and_names_constants_by_the_scheme() -> None:
    for module in CAPABILITIES:
        names = {key for key, value in vars(module).items() if value in constants(module)}
        assert sorted(names) == sorted(module.__all__), module.__name__
        for key in names:
            op = getattr(module, key)
            assert op.tag == _capability(module), (module.__name__, op.name)
            assert key == op.name.split(".", 1)[1].replace(".", "_").upper(), op.name


def test_each_constant_is_typed_by_its_request_and_response() -> None:
    # mypy checks the models passed against the annotation; this checks the annotation
    # against what the row leaves out (a missing request reads as None to mypy).
    for module in CAPABILITIES:
        hints = typing.get_type_hints(module)
        for key, value in vars(module).items():
            if value not in constants(module):
                continue
            request, response = typing.get_args(hints[key])
            assert request is (value.request or NoRequest), value.name
            assert response is (value.response or NoResponse), value.name


_TYPED_CALLER = textwrap.dedent(
    """
    from typing import Any, TypeVar, assert_type

    from dxflow import _operations as ops
    from dxflow._models import ObjectInfo, ObjectPath, Response, ShellRef, WorkflowEvent
    from dxflow._operations import Operation
    from collections.abc import AsyncIterator

    R = TypeVar("R", bound=Response)


    async def _call(op: Operation[Any, R], /, **params: Any) -> R:
        raise NotImplementedError


    def _stream(op: Operation[Any, R], /, **params: Any) -> AsyncIterator[R]:
        raise NotImplementedError


    async def main() -> None:
        assert_type(await _call(ops.objects.INFO, path="a"), ObjectInfo)
        async for event in _stream(ops.workflows.UP, name="w"):
            assert_type(event, WorkflowEvent)
        await _call(ops.objects.INF0, path="a")  # a typo


    WRONG: Operation[ObjectPath, ObjectInfo] = Operation(
        "objects.info", "GET", "/api/objects/info", "One file.", request=ShellRef)  # wrong model
    """
)


@pytest.mark.timeout(600)  # mypy itself, on a busy machine
def test_a_typed_caller_gets_the_response_model_and_a_typo_fails_type_check(
    tmp_path: Path,
) -> None:
    mypy = pytest.importorskip("mypy.api")
    source = tmp_path / "caller.py"
    source.write_text(_TYPED_CALLER)
    flags = ["--strict", "--no-incremental", "--follow-imports=silent", "--config-file="]
    out, err, _ = mypy.run([*flags, "--cache-dir", str(tmp_path / "cache"), str(source)])
    errors = sorted(line.split(": error: ")[0] for line in out.splitlines() if ": error:" in line)
    lines = _TYPED_CALLER.splitlines()
    expected = [n for n, line in enumerate(lines, 1) if "# a typo" in line or "# wrong" in line]
    assert errors == [f"{source}:{n}" for n in expected], out + err
    assert 'has no attribute "INF0"' in out and '"type[ShellRef]"' in out, out
