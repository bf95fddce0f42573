"""A proxy's pool of targets: balancing, passive ejection, health, per-target counters.

- round_robin: each in turn; least_conn: the fewest open connections (ties in turn);
  ip_hash: rendezvous hashing of the client address, so a client keeps its target and
  only the clients of a target that leaves move.
- Passive ejection: EJECT_AFTER consecutive failures take a target out for EJECT_FOR
  seconds (then it is tried again; one more failure takes it out again).
- Active health (`ProxyHealth`): the checker (`_health.py`) calls `checked(ok)`; after
  `unhealthy` failures in a row the target is out until `healthy` passes in a row.

No I/O and no lock: the data planes and the checks run on the engine's loop.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..._models import ProxyTargetState, ProxyTargetStats
from ._contract import TargetLike, Upstream
from ._stats import LATENCY_WINDOW, count_status, percentiles

__all__ = ["EJECT_AFTER", "EJECT_FOR", "Pool", "Target"]

EJECT_AFTER = 3
"""Consecutive failures that eject a target (passive health)."""
EJECT_FOR = 10.0
"""Seconds an ejected target stays out of the pool."""

Health = Literal["healthy", "unhealthy", "unknown"]


@dataclass(eq=False)
class Target:
    """One target of a pool (`TargetLike`): where it is, how it does, what it carried."""

    upstream: Upstream
    open_connections: int = 0
    failures_in_row: int = 0
    ejected_until: float = 0.0
    checked_ok: bool | None = None
    """The active check's verdict (None: not checked, or no active check)."""
    passes: int = 0
    fails: int = 0
    error: str | None = None
    requests: int = 0
    failures: int = 0
    responses: dict[str, int] = field(default_factory=dict)
    bytes_in: int = 0
    bytes_out: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    @property
    def healthy(self) -> bool:
        return self.checked_ok is not False and time.monotonic() >= self.ejected_until

    @property
    def health(self) -> Health:
        if not self.healthy:
            return "unhealthy"
        if self.checked_ok or self.requests > self.failures:
            return "healthy"
        return "unknown"

    @property
    def address(self) -> str | None:
        up = self.upstream
        if up.socket_path is not None:
            return up.socket_path
        host = f"[{up.host}]" if up.host and ":" in up.host else up.host
        return f"{host}:{up.port}"

    def state(self) -> ProxyTargetState:
        return ProxyTargetState(
            target=self.upstream.label, address=self.address, health=self.health,
            open_connections=self.open_connections,
            error=self.error if self.health == "unhealthy" else None,
        )  # fmt: skip

    def stats(self) -> ProxyTargetStats:
        return ProxyTargetStats(
            target=self.upstream.label, address=self.address, health=self.health,
            requests=self.requests, failures=self.failures, responses=dict(self.responses),
            open_connections=self.open_connections, bytes_in=self.bytes_in,
            bytes_out=self.bytes_out, latency_ms=percentiles(self.latencies),
        )  # fmt: skip

    def checked(self, ok: bool, healthy: int, unhealthy: int, error: str | None = None) -> None:
        """One active check's result, with the thresholds that flip the verdict."""
        if ok:
            self.passes, self.fails = self.passes + 1, 0
            if self.checked_ok is not True and self.passes >= healthy:
                self.checked_ok, self.ejected_until, self.failures_in_row = True, 0.0, 0
            elif self.checked_ok is None:
                self.checked_ok = True  # the first pass of a new target: in at once
        else:
            self.passes, self.fails = 0, self.fails + 1
            self.error = error
            if self.checked_ok is not False and self.fails >= unhealthy:
                self.checked_ok = False


class Pool:
    """The targets of one proxy and how they are picked (`PoolLike`)."""

    def __init__(self, upstreams: Sequence[Upstream], balance: str = "round_robin") -> None:
        self.balance = balance
        self.targets: list[Target] = [Target(u) for u in upstreams]
        self._turn = itertools.count()
        self.exhausted: Callable[[], None] | None = None
        """Called when no healthy target is left (a workflow's: resolve its containers)."""

    def replace(self, upstreams: Sequence[Upstream], balance: str | None = None) -> None:
        """New targets; one that stays keeps its health and counters (in-flight work on a
        target that left ends on it, uncounted by the pool)."""
        kept = {t.upstream: t for t in self.targets}
        self.targets = [kept.get(u) or Target(u) for u in upstreams]
        self.balance = balance or self.balance

    def pick(self, client_ip: str, exclude: frozenset[TargetLike] = frozenset()) -> Target | None:
        candidates = [t for t in self.targets if t.healthy and t not in exclude]
        if not candidates:
            if self.exhausted is not None:
                self.exhausted()
            return None
        if self.balance == "ip_hash":
            return max(candidates, key=lambda t: _weight(client_ip, t.upstream.label))
        turn = next(self._turn)
        if self.balance == "least_conn":
            fewest = min(t.open_connections for t in candidates)
            candidates = [t for t in candidates if t.open_connections == fewest]
        return candidates[turn % len(candidates)]

    def begin(self, target: TargetLike) -> None:
        assert isinstance(target, Target)
        target.open_connections += 1
        target.requests += 1

    def end(
        self, target: TargetLike, *, ok: bool, latency: float | None = None,
        bytes_in: int = 0, bytes_out: int = 0, status: int | None = None,
    ) -> None:  # fmt: skip
        assert isinstance(target, Target)
        target.open_connections = max(0, target.open_connections - 1)
        if status is not None:
            count_status(target.responses, status)
        target.bytes_in += bytes_in
        target.bytes_out += bytes_out
        if latency is not None:
            target.latencies.append(latency)
        if ok:
            target.failures_in_row = 0
            return
        target.failures += 1
        target.failures_in_row += 1
        if target.failures_in_row >= EJECT_AFTER:
            target.ejected_until = time.monotonic() + EJECT_FOR
            target.failures_in_row = 0
            target.error = f"failed {EJECT_AFTER} times in a row: out for {EJECT_FOR:g} s"

    def failed(self, target: TargetLike, error: str) -> None:
        """Why the last failure happened (shown with an unhealthy target)."""
        assert isinstance(target, Target)
        target.error = error


def _weight(client: str, label: str) -> bytes:
    return hashlib.blake2b(f"{client}|{label}".encode(), digest_size=8).digest()
