"""The OpenAPI 3.1 document, generated from the operation table."""

from __future__ import annotations

import copy
from typing import Any

from pydantic.json_schema import models_json_schema

from dxflow._exceptions import ApiError, _subclasses
from dxflow._operations import OPERATIONS, Operation
from dxflow._version import __version__
from dxflow._wire import NDJSON

__all__ = ["openapi_document"]

_REF = "#/components/schemas/{model}"
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": sorted({c.code for c in _subclasses(ApiError)})},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) != len(schema.get("anyOf", [])):
        rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
        return {**rest, **options[0]} if len(options) == 1 else {**rest, "anyOf": options}
    return schema


def _parameters(op: Operation, schema: dict[str, Any] | None) -> list[dict[str, Any]]:
    properties = (schema or {}).get("properties", {})
    params = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": properties.get(name, {"type": "string"}),
        }
        for name in op.path_params
    ]
    if op.body_in_query and schema:
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = _not_null(prop)  # a query string cannot say null: leave the parameter out
            if prop.get("type") == "string":
                prop = {"minLength": 1, **prop}  # the server refuses `?x=` (see _routes)
            if name not in op.path_params:
                params.append(
                    {"name": name, "in": "query", "required": name in required, "schema": prop}
                )
    return params


def _body(op: Operation, schema: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(schema)
    for name in op.path_params:
        body.get("properties", {}).pop(name, None)
        if name in body.get("required", []):
            body["required"].remove(name)
    # An empty body means {}: the body is only required when a field is.
    required = bool(body.get("required"))
    return {"required": required, "content": {"application/json": {"schema": body}}}


_BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}


def _responses(op: Operation) -> dict[str, Any]:
    error = {
        "description": "error",
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="Error")}}},
    }
    # Every operation may fail with any code of the error tree (422, 401, 403, 404, 409,
    # 429, 503, ...), always as the same envelope: one default response says so.
    if op.kind == "channel":
        upgrade = {"description": f"{op.summary} The protocol: docs/shells.md."}
        return {"101": upgrade, "default": error}
    if op.kind == "download":
        partial = {"description": "the range asked for (Range header)", "content": _BINARY}
        return {"200": {"description": op.summary, "content": _BINARY}, "206": partial,
                "default": error}  # fmt: skip
    assert op.response is not None
    media = NDJSON if op.kind == "stream" else "application/json"
    ok = {
        "description": op.summary,
        "content": {media: {"schema": {"$ref": _REF.format(model=op.response.__name__)}}},
    }
    return {"200": ok, "default": error}


def openapi_document() -> dict[str, Any]:
    models = {op.response for op in OPERATIONS.values() if op.response}
    requests = {op.request for op in OPERATIONS.values() if op.request}
    pairs = [(model, "serialization") for model in models] + [
        (model, "validation") for model in requests
    ]
    refs, defs = models_json_schema(pairs, ref_template=_REF)  # type: ignore[arg-type]
    schemas: dict[str, Any] = {**defs.get("$defs", {}), "Error": _ERROR}
    paths: dict[str, Any] = {}
    for op in OPERATIONS.values():
        request_schema = None
        if op.request is not None:
            request_schema = schemas.get(op.request.__name__) or refs[(op.request, "validation")]
        entry: dict[str, Any] = {
            "operationId": op.name,
            "summary": op.summary,
            "tags": [op.tag],
            "parameters": _parameters(op, request_schema),
            "responses": _responses(op),
            "security": [] if op.public else [{"bearer": []}],
            "x-dxflow-permission": str(op.permission) if op.permission else None,
            "x-dxflow-mutating": op.mutating,
            "x-dxflow-kind": op.kind,
        }
        if op.also_requires:  # field -> the permission setting it needs besides
            entry["x-dxflow-also-requires"] = {f: str(p) for f, p in op.also_requires}
        if request_schema and not op.body_in_query:
            entry["requestBody"] = _body(op, request_schema)
        if op.kind == "upload":
            entry["requestBody"] = {"required": True, "content": _BINARY}
        paths.setdefault(op.path, {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "dxflow engine API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
