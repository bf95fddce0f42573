"""How a proxied request and its answer are mapped between the client and a target.

What the client presents (its dxflow credentials, which never reach the target), the
headers a target gets (no hop-by-hop, X-Forwarded-* set), the path it is asked for (the
prefix stripped, its base added), and what its answer gets rewritten (redirects and
cookie paths back under the proxy's prefix). Plain functions, shared by the HTTP and
WebSocket data planes.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any
from urllib.parse import quote, unquote_plus

from dxflow._exceptions import error_for_status
from dxflow._wire import envelope_bytes

from ._contract import LiveProxyLike, Upstream

Scope = MutableMapping[str, Any]
Send = Any

# Hop-by-hop (RFC 9110 7.6.1), and what the proxy sets itself.
_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_SKIP = _HOP | {
    b"host",
    b"content-length",
    b"expect",  # the engine's server answers 100-continue itself
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-prefix",
}
_RESPONSE_SKIP = _HOP
# uvicorn adds its own Date; a second one would be a duplicate (the fast path adds none).
_RESPONSE_SKIP_DATE = _HOP | {b"date"}
_CODES = {502: "bad_gateway", 503: "service_unavailable"}


def error_body(status: int, message: str) -> bytes:
    """The API's error envelope for a data-plane answer (502 and 503 say so in their
    code: a proxy's own words for what the API calls unavailable)."""
    return envelope_bytes(error_for_status(status, message), _CODES.get(status))


async def answer_error(
    send: Send, status: int, message: str, headers: dict[str, str] | None = None
) -> None:
    body = error_body(status, message)
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


# -- what the client presents -------------------------------------------------------------


class Credentials:
    """The dxflow credentials of a request, found in one pass over its headers."""

    __slots__ = ("bearer", "cookies", "link", "query", "token")

    def __init__(self, headers: list[tuple[bytes, bytes]], query: bytes, name: str) -> None:
        self.token: str | None = None
        self.link: str | None = None
        self.bearer = False
        self.cookies = False
        self.query = query
        cookie_values: list[bytes] = []
        for key, value in headers:
            if key == b"authorization":
                scheme, _, credential = value.partition(b" ")
                if scheme.lower() == b"bearer" and self.token is None:
                    self.token = credential.strip().decode("latin-1")
                    self.bearer = True
            elif key == b"cookie" and b"dxflow_" in value:
                cookie_values.append(value)
        if cookie_values:
            self.cookies = True
            link_cookie = b"dxflow_link_" + name.encode()
            for value in cookie_values:
                for piece in value.split(b";"):
                    key, _, val = piece.strip().partition(b"=")
                    if key == b"dxflow_token" and self.token is None:
                        self.token = val.decode("latin-1")
                    elif key == link_cookie and self.link is None:
                        self.link = val.decode("latin-1")
        if b"dxflow_link" in query:
            kept = []
            for piece in query.split(b"&"):
                key, _, val = piece.partition(b"=")
                if key == b"dxflow_link":
                    self.link = _unquote(val)
                else:
                    kept.append(piece)
            self.query = b"&".join(kept)


def _unquote(value: bytes) -> str:
    return unquote_plus(value.decode("latin-1"))


def _strip_cookies(value: bytes) -> bytes:
    kept = [
        piece
        for piece in (p.strip() for p in value.split(b";"))
        if piece and not piece.startswith((b"dxflow_token=", b"dxflow_link_"))
    ]
    return b"; ".join(kept)


def auth_mode(live: LiveProxyLike) -> str:
    """The proxy's auth (token | link | none): with "token", an Authorization header
    carries the dxflow token and is not the target's to see."""
    mode = getattr(live, "auth", None)
    if mode is None:
        mode = getattr(getattr(live, "rules", None), "auth", "token")
    return str(mode)


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client and client[0] else "127.0.0.1"  # the unix socket: local


def host_of(scope: Scope) -> str:
    for key, value in scope["headers"]:
        if key == b"host":
            return str(value.decode("latin-1"))
    return ""


class Forwarded:
    """The client's headers as a target gets them (`headers`: no hop-by-hop, no dxflow
    credentials, X-Forwarded-* set), and what was learnt on the way (one pass)."""

    __slots__ = ("chunked", "headers", "host", "length")

    def __init__(
        self, headers: list[tuple[bytes, bytes]], host: str, length: bytes | None, chunked: bool
    ) -> None:
        self.headers = headers
        self.host = host
        """The client's Host."""
        self.length = length
        """Its Content-Length, if any."""
        self.chunked = chunked
        """Whether its body is chunked."""


def forwarded_headers(
    scope: Scope, creds: Credentials, prefix: str, strip_bearer: bool, skip: frozenset[bytes]
) -> Forwarded:
    """The client's headers as a target gets them (see `Forwarded`)."""
    out: list[tuple[bytes, bytes]] = []
    forwarded_for = b""
    host = b""
    length: bytes | None = None
    chunked = False
    for key, value in scope["headers"]:
        if key in skip:
            if key == b"host":
                host = value
            elif key == b"x-forwarded-for":
                forwarded_for = value + b", "
            elif key == b"content-length":
                length = value
            elif key == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            continue
        if key == b"authorization" and strip_bearer and creds.bearer:
            continue
        if key == b"cookie" and creds.cookies:
            value = _strip_cookies(value)
            if not value:
                continue
        out.append((key, value))
    ip = client_ip(scope).encode()
    scheme = b"https" if scope.get("scheme") in ("https", "wss") else b"http"
    out.append((b"x-forwarded-for", forwarded_for + ip))
    out.append((b"x-forwarded-proto", scheme))
    if host:
        out.append((b"x-forwarded-host", host))
    if prefix:
        out.append((b"x-forwarded-prefix", prefix.encode()))
    return Forwarded(out, host.decode("latin-1"), length, chunked)


@lru_cache(maxsize=4096)
def upstream_host(upstream: Upstream) -> str:
    """The Host a target is sent (and the authority its own absolute URLs carry)."""
    if upstream.scheme == "unix" or not upstream.host:
        return "localhost"
    host = f"[{upstream.host}]" if ":" in upstream.host else upstream.host
    name = upstream.server_name or host
    return f"{name}:{upstream.port}" if upstream.port else name


def target_path(scope: Scope, prefix: str, base: str, query: bytes) -> bytes:
    """The path and query a target is asked for: the prefix stripped, its base added."""
    raw: bytes | None = scope.get("raw_path")
    encoded = prefix.encode()
    if raw is not None and raw.startswith(encoded):
        rest = raw[len(encoded) :]
    else:
        rest = quote(str(scope["path"])[len(prefix) :]).encode()
    path = (base.encode() + rest) if base else rest
    if not path:
        path = b"/"
    return path + b"?" + query if query else path


# -- what the target answers --------------------------------------------------------------


def _strip_base(path: str, base: str) -> str:
    if base and (path == base or path.startswith((base + "/", base + "?"))):
        return path[len(base) :] or "/"
    return path


@lru_cache(maxsize=4096)
def _origins(upstream: Upstream) -> tuple[str, ...]:
    """How a target spells its own absolute URLs (the Host it is sent)."""
    authority = upstream_host(upstream)
    scheme = "https" if upstream.scheme == "https" else "http"
    default = ":443" if scheme == "https" else ":80"
    if authority.endswith(default):
        return (f"{scheme}://{authority}", f"{scheme}://{authority[: -len(default)]}")
    return (f"{scheme}://{authority}",)


class Rewriter:
    """Maps a target's redirects and cookies back under the proxy's public URL."""

    __slots__ = ("base", "client_host", "prefix", "scope", "skip", "upstream")

    def __init__(self, scope: Scope, prefix: str, upstream: Upstream, client_host: str) -> None:
        self.scope = scope
        self.prefix = prefix
        self.upstream = upstream
        self.client_host = client_host
        self.base = upstream.base
        self.skip = _RESPONSE_SKIP_DATE if scope.get("server_date", True) else _RESPONSE_SKIP

    @property
    def public(self) -> str:
        scheme = "https" if self.scope.get("scheme") in ("https", "wss") else "http"
        host = self.client_host
        return f"{scheme}://{host}{self.prefix}" if host else self.prefix

    def location(self, value: str) -> str:
        if value.startswith("/") and not value.startswith("//"):
            return self.prefix + _strip_base(value, self.base)
        for origin in _origins(self.upstream):
            if value.startswith(origin) and value[len(origin) : len(origin) + 1] in (
                "",
                "/",
                "?",
                "#",
            ):
                rest = value[len(origin) :] or "/"
                return self.public + _strip_base(rest, self.base)
        return value

    def cookie(self, value: str) -> str | None:
        name = value.split("=", 1)[0].strip()
        if name.startswith("dxflow_"):
            return None  # a target may not set (or shadow) the engine's own cookies
        if not self.prefix and not self.base:
            return value
        parts = value.split(";")
        out = [parts[0]]
        for attr in parts[1:]:
            key, _, val = attr.partition("=")
            key = key.strip().lower()
            if key == "domain":
                continue  # the target's host is not the one the browser sees
            if key == "path":
                path = _strip_base(val.strip() or "/", self.base)
                out.append(f" Path={self.prefix}{path}")
                continue
            out.append(attr)
        return ";".join(out)

    def headers(
        self, raw: list[tuple[bytes, bytes]], set_cookie: str | None
    ) -> list[tuple[bytes, bytes]]:
        out: list[tuple[bytes, bytes]] = []
        for name, value in raw:
            key = name.lower()
            if key in self.skip:
                continue
            if key == b"location":
                value = self.location(value.decode("latin-1")).encode("latin-1")
            elif key == b"set-cookie":
                cookie = self.cookie(value.decode("latin-1"))
                if cookie is None:
                    continue
                value = cookie.encode("latin-1")
            out.append((key, value))
        if set_cookie:
            out.append((b"set-cookie", set_cookie.encode("latin-1")))
        return out
