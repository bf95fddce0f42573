"""Who is calling: a bearer token from the header, the console's cookie, or (on
WebSocket upgrades only) the ``token`` query parameter.

A cookie is sent by browsers on requests other sites make too, so it authenticates a
mutating call only with the `X-Dxflow-CSRF` header (which a cross-site page cannot set
without a CORS preflight the engine never grants), and a WebSocket upgrade only from
the engine's own origin (or from a client that sends no Origin: not a browser).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection

from dxflow._core import Context, EngineCore, Identity
from dxflow._core._bridges._names import CALLER_HEADER, CALLER_PERMISSIONS_HEADER
from dxflow._exceptions import PermissionDenied
from dxflow._operations import Operation

__all__ = ["COOKIE", "CSRF_HEADER", "context_for", "cookie_header", "cross_site_origin"]

COOKIE = "dxflow_token"
CSRF_HEADER = "X-Dxflow-CSRF"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cookie_header(token: str, max_age: int, secure: bool) -> str:
    """The Set-Cookie value a console must use: never sent by another site's requests."""
    flags = "; Secure" if secure else ""
    return f"{COOKIE}={token}; Max-Age={max_age}; Path=/; HttpOnly; SameSite=Strict{flags}"


def _client(connection: HTTPConnection) -> str:
    client = connection.client
    if client is None or not client.host:
        return "unix"
    return f"{client.host}:{client.port}"


def _token(connection: HTTPConnection, websocket: bool) -> tuple[str | None, bool]:
    """The token presented, and whether it came from the cookie."""
    header = connection.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        return (value.strip() if scheme.lower() == "bearer" else None), False
    if websocket and "token" in connection.query_params:
        return connection.query_params["token"], False
    cookie = connection.cookies.get(COOKIE)
    return cookie, cookie is not None


def cross_site_origin(connection: HTTPConnection) -> str | None:
    """The Origin of a browser page on another site, or None (same origin, or no Origin)."""
    origin = connection.headers.get("origin")
    if origin is None:
        return None  # not a browser: a CLI, an SDK, curl
    host = (connection.headers.get("host") or "").lower()
    parts = urlsplit(origin.strip().lower())
    same = parts.scheme in ("http", "https") and bool(host) and parts.netloc == host
    return None if same else origin


def _csrf_missing(connection: HTTPConnection) -> bool:
    method = connection.scope.get("method")
    return method not in _SAFE_METHODS and not connection.headers.get(CSRF_HEADER)


def context_for(
    connection: HTTPConnection, core: EngineCore, op: Operation, websocket: bool = False
) -> Context:
    """The caller's context; a present but invalid token fails here (401)."""
    client = _client(connection)
    identity: Identity | None = None
    if not op.public:
        token, from_cookie = _token(connection, websocket)
        if from_cookie and not websocket and _csrf_missing(connection):
            raise PermissionDenied(
                f"cookie authentication of {op.name} needs the {CSRF_HEADER} header"
                f" (e.g. {CSRF_HEADER}: 1); or send the token as Authorization: Bearer",
                header=CSRF_HEADER,
            )
        if token is not None:
            identity = core.auth.authenticate(token, client)
        caller = connection.headers.get(CALLER_HEADER)
        if caller is not None and identity is not None:  # a call our bridge master relays
            granted = connection.headers.get(CALLER_PERMISSIONS_HEADER, "")
            identity = core.bridge_agent.delegate(identity, caller, granted)
    return Context(identity, client)
