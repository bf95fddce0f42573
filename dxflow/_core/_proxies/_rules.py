"""A proxy's access rules: CIDR allow/deny, a token-bucket rate, a connection cap.

Plain classes with no I/O: the dispatcher (`Dispatcher.admit_proxy`) asks them, in one
place, whether a client gets in. Scopes: allow/deny per client address; the rate per
client address (`rate_key="client"`) or per identity (`"identity"`: the key's name, the
link's id; a client with neither counts by address), one bucket each, per proxy; the
connection cap over all clients of the proxy (HTTP: requests in flight).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from ._contract import Refused

__all__ = ["Buckets", "Networks", "hash_secret", "parse_networks", "parse_rate"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")
_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}  # fmt: skip
MAX_BUCKETS = 100_000
"""Clients tracked per proxy; the least recent is forgotten past it (memory stays bounded)."""


def parse_rate(text: str) -> tuple[int, float]:
    """`"100/min"` -> (100, 60.0): so many requests per so many seconds."""
    match = _RATE.match(text.lower())
    unit = match.group(3) if match else ""
    if unit not in _UNITS:  # plurals: secs, mins, hours
        unit = unit.removesuffix("s")
    if not match or unit not in _UNITS or int(match.group(1)) <= 0:
        raise ValueError(
            f'rate {text!r} is not COUNT/UNIT: write it like "100/min", "5/s" or '
            '"1000/h" (units: s, min, h, d)'
        )
    per = float(match.group(2) or 1) * _UNITS[unit]
    if per <= 0:
        raise ValueError(f"rate {text!r}: the period must be positive")
    return int(match.group(1)), per


def parse_networks(entries: Iterable[str], field: str) -> list[IPNetwork]:
    """CIDRs or addresses; a bad one raises ValueError naming `field` and the entry."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f'{field}: {entry!r} is not a CIDR or an address (like "10.0.0.0/8", '
                '"192.168.1.7" or "fd00::/8")'
            ) from None
    return networks


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's IPv4 client
    return address


class Networks:
    """allow/deny: deny wins; an empty allow admits any address it does not deny."""

    def __init__(self, allow: list[IPNetwork], deny: list[IPNetwork]) -> None:
        self.allow, self.deny = allow, deny

    def check(self, ip: str) -> None:
        if not self.allow and not self.deny:
            return
        address = _address(ip)
        if address is None:  # a unix socket peer or an unknown address: rules cannot hold
            if self.allow:
                raise Refused(403, f"client {ip!r} is not in this proxy's allow list")
            return
        if any(address in net for net in self.deny):
            raise Refused(403, f"client {address} is denied by this proxy's rules")
        if self.allow and not any(address in net for net in self.allow):
            raise Refused(403, f"client {address} is not in this proxy's allow list")


class Buckets:
    """A token bucket per key: `burst` tokens at most, refilled at `count` per `per` s."""

    def __init__(self, count: int, per: float, burst: int | None) -> None:
        self.rate = count / per
        self.burst = float(burst or count)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str, now: float | None = None) -> None:
        """Spend one token of `key`; Refused 429 with Retry-After when none is left."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.pop(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = max(1, math.ceil((1.0 - tokens) / self.rate))
                raise Refused(
                    429, f"rate limit of this proxy reached for {key}; retry in {wait} s",
                    {"Retry-After": str(wait)}, reason="rate",
                )  # fmt: skip
            self._buckets[key] = (tokens - 1.0, now)
            if len(self._buckets) > MAX_BUCKETS:
                self._buckets.popitem(last=False)


def hash_secret(secret: str) -> str:
    """What the state keeps of an access link's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()
