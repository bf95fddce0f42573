"""Who is calling: a bearer token from the header, the console's cookie, or (on
WebSocket upgrades only) the ``token`` query parameter."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from dxflow._core import Context, EngineCore, Identity
from dxflow._operations import Operation

__all__ = ["COOKIE", "context_for"]

COOKIE = "dxflow_token"


def _client(connection: HTTPConnection) -> str:
    client = connection.client
    if client is None or not client.host:
        return "unix"
    return f"{client.host}:{client.port}"


def _token(connection: HTTPConnection, websocket: bool) -> str | None:
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" else None
    if websocket and "token" in connection.query_params:
        return connection.query_params["token"]
    return connection.cookies.get(COOKIE)


def context_for(
    connection: HTTPConnection, core: EngineCore, op: Operation, websocket: bool = False
) -> Context:
    """The caller's context; a present but invalid token fails here (401)."""
    client = _client(connection)
    identity: Identity | None = None
    if not op.public:
        token = _token(connection, websocket)
        if token is not None:
            identity = core.auth.authenticate(token, client)
    return Context(identity, client)
