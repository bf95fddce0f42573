"""Models of proxies: what a proxy is told (create/update), what it shows, what it counts.

A proxy forwards HTTP (with WebSocket upgrades) or TCP from a listener of the engine to a
pool of targets. Its listener is the engine's own, under `/p/{name}/` (HTTP only, the
default), or a port of its own (`port`, 0 picks one). Targets are addresses on the
engine's host (`host:port`, `http://host:port`, `https://host:port`, `unix:/path`) or the
containers of one workflow service (`workflow`, `service`, `service_port`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from ._base import Request, Response

__all__ = [
    "ProxyCreate",
    "ProxyHealth",
    "ProxyInfo",
    "ProxyLink",
    "ProxyLinkCreate",
    "ProxyLinkList",
    "ProxyLinkRef",
    "ProxyList",
    "ProxyRef",
    "ProxyStats",
    "ProxyTargetState",
    "ProxyTargetStats",
    "ProxyUpdate",
]

PROXY_NAME = r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
"""A DNS label: the name is also the host name `{name}.{domain}` when the engine has one."""

Protocol = Literal["http", "tcp"]
Balance = Literal["round_robin", "least_conn", "ip_hash"]
AuthMode = Literal["token", "link", "none"]
RateKey = Literal["client", "identity"]
_Name = Field(min_length=1, max_length=63, pattern=PROXY_NAME)


class ProxyHealth(Request):
    """An active health check of every target: an HTTP GET of `path` (any 2xx or 3xx is
    healthy), or a TCP connect when `path` is None."""

    path: str | None = Field(default=None, max_length=1024, pattern=r"^/")
    interval: float = Field(default=5.0, ge=0.2, le=3600)
    timeout: float = Field(default=2.0, gt=0, le=60)
    healthy: int = Field(default=2, ge=1, le=100)
    """Consecutive passes that bring an unhealthy target back."""
    unhealthy: int = Field(default=3, ge=1, le=100)
    """Consecutive failures that take a target out of the pool."""


class _Spec(Request):
    """The fields create and update share (update: None keeps the value)."""

    targets: list[str] | None = Field(default=None, max_length=64)
    """`host:port`, `http://host:port[/base]`, `https://host:port[/base]` or
    `unix:/path/to.sock`; several make a pool."""
    workflow: str | None = Field(default=None, max_length=128)
    """With `service` and `service_port`: the containers of that workflow service."""
    service: str | None = Field(default=None, max_length=128)
    service_port: int | None = Field(default=None, ge=1, le=65535)
    balance: Balance | None = None
    health: ProxyHealth | None = None
    allow: list[str] | None = Field(default=None, max_length=256)
    """CIDRs (or addresses) a client must come from; empty: any."""
    deny: list[str] | None = Field(default=None, max_length=256)
    """CIDRs refused; deny wins over allow."""
    auth: AuthMode | None = None
    """token: a dxflow bearer token (or an access token cookie) with `permission`; link:
    an access link of this proxy; none: public."""
    permission: str | None = Field(default=None, max_length=32)
    """The permission `auth="token"` asks of the caller (default PROXY)."""
    rate: str | None = Field(default=None, max_length=32)
    """A token-bucket rate, `"100/min"` (per s, min, h); "" removes it."""
    burst: int | None = Field(default=None, ge=1, le=1_000_000)
    rate_key: RateKey | None = None
    """Whom the rate counts: each client address, or each identity."""
    max_connections: int | None = Field(default=None, ge=0, le=1_000_000)
    """Open connections (HTTP: requests in flight) at most, over all clients; 0: no cap."""
    timeout: float | None = Field(default=None, gt=0, le=3600)
    """Seconds a target may take to start answering (then 504)."""
    connect_timeout: float | None = Field(default=None, gt=0, le=600)
    verify: bool | None = None
    """Check the certificates of `https://` targets (on by default)."""
    retries: int | None = Field(default=None, ge=0, le=10)
    """Other targets an idempotent request is tried on when one fails before answering."""


class ProxyCreate(_Spec):
    name: str = _Name
    protocol: Protocol = "http"
    port: int | None = Field(default=None, ge=0, le=65535)
    """A port of its own (0 picks a free one); None: the engine's listener under
    `/p/{name}/` (HTTP only)."""
    host: str = Field(default="127.0.0.1", max_length=255)
    """The address a port of its own listens on."""
    tls: bool = False
    """Terminate TLS on a port of its own (the engine's certificate unless `tls_cert`)."""
    tls_cert: str | None = Field(default=None, max_length=4096)
    """An object store path of a PEM certificate chain (with `tls_key`)."""
    tls_key: str | None = Field(default=None, max_length=4096)
    exist_ok: bool = False
    """A proxy of that name exists already: update it to this spec instead of a Conflict."""


class ProxyUpdate(_Spec):
    name: str = _Name


class ProxyRef(Request):
    name: str = _Name


class ProxyTargetState(Response):
    target: str
    """As given (a workflow service's containers: `workflow/service#container:port`)."""
    address: str | None
    """Where it is reached now (resolved: an IP and port, or a socket path)."""
    health: Literal["healthy", "unhealthy", "unknown"]
    open_connections: int = 0
    error: str | None = None
    """Why it is unhealthy or unresolved."""


class ProxyInfo(Response):
    name: str
    protocol: Protocol
    url: str | None
    """Where clients reach it (None: under `/p/` with no server running this engine)."""
    state: Literal["serving", "stopped", "error"]
    error: str | None = None
    targets: list[str]
    workflow: str | None = None
    service: str | None = None
    service_port: int | None = None
    port: int | None
    """Its own port (the one picked when it was created with 0)."""
    host: str
    tls: bool
    balance: Balance
    health: ProxyHealth | None
    allow: list[str]
    deny: list[str]
    auth: AuthMode
    permission: str
    rate: str | None
    burst: int | None
    rate_key: RateKey
    max_connections: int
    timeout: float
    connect_timeout: float
    verify: bool
    retries: int
    pool: list[ProxyTargetState] = Field(default_factory=list)
    created_by: str
    created_at: datetime
    updated_at: datetime


class ProxyList(Response):
    proxies: list[ProxyInfo]


class ProxyTargetStats(Response):
    target: str
    address: str | None
    health: Literal["healthy", "unhealthy", "unknown"]
    requests: int = 0
    failures: int = 0
    """Connections or requests that failed at this target (refused, reset, timed out)."""
    responses: dict[str, int] = Field(default_factory=dict)
    """The target's HTTP answers by class: 1xx .. 5xx (a WebSocket upgrade is a 1xx). The
    502/504 the proxy answers for a target that failed count in `failures` instead."""
    open_connections: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    latency_ms: dict[str, float] = Field(default_factory=dict)
    """p50, p90, p99 of the time to the first byte of the answer, over recent requests."""


class ProxyStats(Response):
    name: str
    since: datetime
    """When counting started (the engine's start, or the proxy's creation)."""
    requests: int = 0
    """HTTP requests (TCP: connections) admitted."""
    refused: dict[str, int] = Field(default_factory=dict)
    """Refusals by reason: denied, auth, rate, connections."""
    responses: dict[str, int] = Field(default_factory=dict)
    """HTTP answers by class: 1xx .. 5xx."""
    open_connections: int = 0
    bytes_in: int = 0
    """From clients."""
    bytes_out: int = 0
    """To clients."""
    latency_ms: dict[str, float] = Field(default_factory=dict)
    targets: list[ProxyTargetStats] = Field(default_factory=list)


class ProxyLinkCreate(Request):
    name: str = _Name
    expires: float = Field(default=3600, gt=0, le=366 * 86400)
    """Seconds from now."""


class ProxyLinkRef(Request):
    name: str = _Name
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")


class ProxyLink(Response):
    id: str
    proxy: str
    url: str | None
    """The proxy's URL carrying the link (only its creator sees it): opening it sets a
    cookie scoped to the proxy, so the app's own links keep working."""
    expires_at: datetime
    revoked: bool = False
    created_by: str
    created_at: datetime


class ProxyLinkList(Response):
    links: list[ProxyLink]
