"""What the proxies' control plane gives their data planes (the contract between them).

The control plane (`_service.py`: the `proxies.*` handlers, persistence, listeners in the
lifecycle; `_pool.py`, `_rules.py`, `_stats.py`, `_targets.py`) keeps one `LiveProxy`
per configured proxy. The data planes (`_http.py`: HTTP and WebSocket, under `/p/{name}/`
on the engine's listener or on a port of its own; `_tcp.py`: TCP) only ever:

1. find the proxy: `ProxyRegistry.by_name(name)` / `.by_host(host)`;
2. admit the connection or request: `await registry.admit(live, Client(...))`, which
   returns an `Admission` or raises `Refused` (the status, message and headers to answer
   with: 403, 401, 429 + Retry-After, 503). It is the dispatcher that decides
   (`Dispatcher.admit_proxy`): CIDR rules, auth, rate, connection cap, audit of refusals;
3. pick a target: `live.pool.pick(client_ip, exclude)`; `None`: no healthy target (502);
4. report what happened: `live.pool.begin(t)` / `live.pool.end(t, ok=...)`,
   `live.stats.request(...)` etc., and `admission.release()` when the connection or
   request is over (it frees the connection slot).

Everything here is a plain class with no I/O, so each side can be tested alone.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

__all__ = [
    "SAFE_METHODS",
    "Admission",
    "Client",
    "LiveProxyLike",
    "PoolLike",
    "Refused",
    "RegistryLike",
    "StatsLike",
    "TargetLike",
    "Upstream",
]


Opener = Callable[[], Awaitable[socket.socket]]


@dataclass(frozen=True)
class Upstream:
    """One resolved target: where to connect now."""

    label: str
    """The target as the user gave it (or `workflow/service#container:port`)."""
    scheme: Literal["http", "https", "tcp", "unix"]
    host: str | None = None
    port: int | None = None
    socket_path: str | None = None
    """For `unix`: the socket's path. HTTP over it is plain HTTP/1.1."""
    socket_root: str = "/"
    """For `unix`: the folder the socket is opened beneath at each connect, following no
    link on the way (`_unix.connect_unix`): the narrowest allowed folder holding it."""
    socket_denied: tuple[str, ...] = ()
    """For `unix`: sockets never connected to, whatever name reaches them at connect time
    (a key other than MASTER: the Docker sockets)."""
    base: str = ""
    """For http(s): a path the target's URLs live under (`http://h:p/base`), no trailing /."""
    server_name: str | None = None
    """For https: the name to verify the certificate against (default: host)."""
    bridge: str | None = None
    """The agent whose `host:port` this is (`bridge://NAME/host:port`): reached over its
    link, never by this host's network."""
    opener: Opener | None = field(default=None, compare=False, hash=False, repr=False)
    """For a bridge target: a connected socket to it (set when the policy admits it)."""


class TargetLike(Protocol):
    # Read-only members (properties): an implementation may hold richer types.
    @property
    def upstream(self) -> Upstream: ...

    @property
    def healthy(self) -> bool: ...

    @property
    def open_connections(self) -> int: ...


class PoolLike(Protocol):
    def pick(self, client_ip: str, exclude: frozenset[TargetLike] = ...) -> TargetLike | None:
        """A target for this client by the proxy's balance (ip_hash: sticky per client
        address; a healthy one, never one in `exclude`); None when none is left."""

    def begin(self, target: TargetLike) -> None:
        """A connection or request to `target` starts (least_conn counts these)."""

    def end(self, target: TargetLike, *, ok: bool, latency: float | None = None,
            bytes_in: int = 0, bytes_out: int = 0, status: int | None = None) -> None:  # fmt: skip
        """It ended; `ok=False` (refused, reset, timed out before an answer) counts toward
        passive ejection. `latency`: seconds to the answer's first byte. `status`: the
        HTTP status the target answered (None: it gave none, or TCP)."""


class StatsLike(Protocol):
    def request(self) -> None:
        """An admitted HTTP request or TCP connection."""

    def response(self, status: int, latency: float) -> None:
        """An HTTP answer's status as the client got it, and the time to its head."""

    def transferred(self, bytes_in: int, bytes_out: int) -> None:
        """Bytes from clients (in) and to clients (out), counted as they flow."""

    def opened(self) -> None: ...

    def closed(self) -> None: ...


@dataclass(frozen=True)
class Client:
    """Who knocks: the data plane fills what it knows before it reads any body."""

    ip: str
    """The peer address (never X-Forwarded-For from the client)."""
    token: str | None = None
    """A bearer token (Authorization header) or the access cookie's value."""
    link: str | None = None
    """An access link's secret (the `dxflow_link` query parameter or cookie)."""
    http: bool = True
    writes: bool = False
    """It may change things behind the proxy: an HTTP method other than GET, HEAD and
    OPTIONS, or a WebSocket (READ_ONLY keys are refused these, as any mutating call)."""


class Refused(Exception):
    """The connection is not admitted: answer `status` with `message` (and `headers`)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 reason: str = "denied") -> None:  # fmt: skip
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.reason = reason
        """denied | auth | rate | connections | unavailable (the stats' refused keys)."""


@dataclass
class Admission:
    """An admitted client: who it is, and the slot it holds until `release()`."""

    identity: str | None
    set_cookie: str | None = None
    """A Set-Cookie value the answer must carry (an access link just used: the cookie
    keeps the app's own links working), scoped to the proxy."""
    _release: Callable[[], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._release is not None:
            release, self._release = self._release, None
            release()


class LiveProxyLike(Protocol):
    """One configured proxy as the data planes see it."""

    # Read-only members (properties), so the control plane's LiveProxy, with its richer
    # pool and stats, is one (mypy holds protocol attributes settable and invariant).
    @property
    def name(self) -> str: ...

    @property
    def protocol(self) -> Literal["http", "tcp"]: ...

    @property
    def prefix(self) -> str:
        """`/p/{name}` under the engine's listener; "" on a port of its own (by_host: the
        data plane knows it came by a host name, and strips nothing)."""
        ...

    @property
    def timeout(self) -> float: ...

    @property
    def connect_timeout(self) -> float: ...

    @property
    def verify(self) -> bool: ...

    @property
    def retries(self) -> int: ...

    @property
    def pool(self) -> PoolLike: ...

    @property
    def stats(self) -> StatsLike: ...


class RegistryLike(Protocol):
    """The control plane, as the data planes see it (`EngineCore.proxies`)."""

    def by_name(self, name: str) -> LiveProxyLike | None:
        """A proxy served under `/p/{name}/`, if one of that name exists."""

    def by_host(self, host: str) -> LiveProxyLike | None:
        """The proxy a Host header names (`{name}.{domain}`, the port stripped), when the
        engine has a `proxy_domain`; None otherwise."""

    async def admit(self, live: LiveProxyLike, client: Client) -> Admission:
        """Admit or raise `Refused` (the dispatcher decides and audits refusals)."""


# The listeners a proxy with a port of its own runs, as lifecycle tasks of the control
# plane. Each serves `sock` (already bound and listening) until it is cancelled, then
# closes it and ends the connections it holds.
#   _http.serve_http(sock, live, registry, ssl_context)   HTTP/1.1 and WebSocket
#   _tcp.serve_tcp(sock, live, registry, ssl_context)     bytes, both ways
