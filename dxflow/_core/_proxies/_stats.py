"""What a proxy counts: requests, refusals, answers by class, bytes, connections, latency.

Counters are plain integers bumped on the event loop (no lock: the data planes run on
the engine's loop). Latencies are kept over a bounded window of recent requests, so
percentiles cost memory that does not grow with traffic.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["LATENCY_WINDOW", "Stats", "count_status", "percentiles"]

LATENCY_WINDOW = 2048
"""Recent latencies kept per proxy and per target for the percentiles."""


def percentiles(samples: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 in milliseconds (empty: no samples yet)."""
    ordered = sorted(samples)
    if not ordered:
        return {}
    last = len(ordered) - 1
    return {
        name: round(ordered[min(last, int(q * len(ordered)))] * 1000, 3)
        for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))
    }


def count_status(counts: dict[str, int], status: int) -> None:
    """One more answer of `status`'s class ("1xx" .. "5xx") in `counts`."""
    key = f"{max(1, min(5, status // 100))}xx"
    counts[key] = counts.get(key, 0) + 1


class Flow(Protocol):
    """An open TCP connection's bytes so far (counted on its own, added when it ends)."""

    @property
    def bytes_in(self) -> int: ...

    @property
    def bytes_out(self) -> int: ...


class Stats:
    """The counters of one proxy (`StatsLike`), kept across updates of its spec."""

    def __init__(self) -> None:
        self.since = datetime.now(UTC)
        self.requests = 0
        self.refused: dict[str, int] = {}
        self.responses: dict[str, int] = {}
        self.open_connections = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.last_used = time.monotonic()
        self.flows: set[Flow] = set()
        """Open TCP connections: their bytes count toward the totals before they end."""

    def totals(self) -> tuple[int, int]:
        """Bytes in and out, those of open connections included."""
        flows = list(self.flows)
        return (self.bytes_in + sum(f.bytes_in for f in flows),
                self.bytes_out + sum(f.bytes_out for f in flows))  # fmt: skip

    def request(self) -> None:
        self.requests += 1
        self.last_used = time.monotonic()

    def response(self, status: int, latency: float) -> None:
        count_status(self.responses, status)
        self.latencies.append(latency)

    def transferred(self, bytes_in: int, bytes_out: int) -> None:
        self.bytes_in += bytes_in
        self.bytes_out += bytes_out

    def opened(self) -> None:
        self.open_connections += 1

    def closed(self) -> None:
        self.open_connections = max(0, self.open_connections - 1)

    def refuse(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
