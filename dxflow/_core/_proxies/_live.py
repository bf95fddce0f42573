"""One configured proxy as it runs: its spec compiled into rules, a pool and counters.

A `LiveProxy` lives as long as the proxy exists. An update swaps its spec, rules and
targets in one step on the loop (no await between them): a connection admitted before
keeps the targets and slot it got, the next one sees the new spec. The counters and the
connection slots are the proxy's, so they carry over.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ..._models import ProxyCreate
from ..._permissions import Permission
from ._contract import Upstream
from ._pool import Pool
from ._rules import Buckets, Networks
from ._stats import Stats

__all__ = ["Link", "LiveProxy", "Rules"]


@dataclass(frozen=True)
class Rules:
    """The access rules of one spec, compiled (see `_rules.py`)."""

    networks: Networks
    auth: Literal["token", "link", "none"]
    permission: Permission
    buckets: Buckets | None
    rate_key: Literal["client", "identity"]
    max_connections: int


@dataclass
class Link:
    """An access link as the data plane checks it (cached; the state has the truth)."""

    id: str
    secret_hash: str
    expires_at: float
    revoked: bool
    created_by: str | None


@dataclass(eq=False)
class LiveProxy:
    """`LiveProxyLike`, plus what the control plane keeps of it."""

    name: str
    spec: ProxyCreate
    rules: Rules
    pool: Pool
    created_by: str
    created_at: float
    updated_at: float
    by_master: bool = False
    port: int | None = None
    """The port bound (the one picked for 0); None under the engine's listener."""
    stats: Stats = field(default_factory=Stats)
    sock: socket.socket | None = field(default=None, repr=False)
    error: str | None = None
    """Why it does not serve (a port now taken, a target now refused): state "error"."""
    serving: bool = False
    """Its listener task runs (a proxy with a port of its own)."""
    open: int = 0
    """Admitted connections (HTTP: requests in flight) holding a slot."""
    links: dict[str, Link] = field(default_factory=dict)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)
    """The TLS its own port terminates (loaded at create, or when its listener starts)."""
    removed: bool = False
    """It was removed: `end_all` cancelled what it served, and nothing new is admitted."""
    _serving: set[asyncio.Task[object]] = field(default_factory=set, repr=False)
    resolved_at: float = 0.0
    """When its workflow service's containers were last resolved (monotonic)."""

    @property
    def protocol(self) -> Literal["http", "tcp"]:
        return self.spec.protocol

    @property
    def prefix(self) -> str:
        return f"/p/{self.name}" if self.spec.port is None else ""

    @property
    def timeout(self) -> float:
        return float(self.spec.timeout or 60.0)

    @property
    def connect_timeout(self) -> float:
        return float(self.spec.connect_timeout or 5.0)

    @property
    def verify(self) -> bool:
        return self.spec.verify is not False

    @property
    def retries(self) -> int:
        return int(self.spec.retries if self.spec.retries is not None else 1)

    def swap(self, spec: ProxyCreate, rules: Rules, upstreams: list[Upstream] | None,
             updated_at: float) -> None:  # fmt: skip
        """The new spec at once (see the module); None upstreams: keep the pool's."""
        if upstreams is not None:
            self.pool.replace(upstreams, spec.balance)
        else:
            self.pool.balance = spec.balance or self.pool.balance
        self.spec, self.rules, self.updated_at = spec, rules, updated_at

    def acquire(self) -> Callable[[], None]:
        """Take a slot for the task serving a connection or request; the release."""
        self.open += 1
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)

        def release() -> None:
            self.open = max(0, self.open - 1)
            self._serving.discard(task)

        return release

    def end_all(self) -> None:
        """End every connection and request in flight (it was removed: no one keeps
        reaching its targets through it)."""
        for task in list(self._serving):  # from any thread: an in-process engine's too
            task.get_loop().call_soon_threadsafe(task.cancel)
