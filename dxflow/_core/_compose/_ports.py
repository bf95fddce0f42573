"""``ports`` (short and long syntax, host IPs, ranges, protocols) and ``expose``."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from ..._models._compose import PortMapping
from ._errors import child, invalid, item
from ._values import as_int, as_str, expect, expect_list, optional

__all__ = ["normalize_expose", "normalize_ports"]

_PROTOCOLS = ("tcp", "udp", "sctp")
_MODES = ("ingress", "host")
_RANGE = re.compile(r"(\d+)(?:-(\d+))?")
_EXPOSE = re.compile(r"\d+(?:-\d+)?(?:/(?:tcp|udp|sctp))?")
_SHORT_HINT = (
    "accepted: CONTAINER, HOST:CONTAINER, IP:HOST:CONTAINER, IP::CONTAINER, "
    "[IPv6]:HOST:CONTAINER (IP a literal address), each port or a range LOW-HIGH, "
    "optionally /tcp, /udp or /sctp "
    "(e.g. 8080:80, 127.0.0.1:53:53/udp, [::1]:8080:80)"
)
_BRACKETED = re.compile(r"\[([^\]]*)\]:([^:]*):([^:]*)")


def _range(text: str, path: str, what: str) -> tuple[int, int]:
    match = _RANGE.fullmatch(text.strip())
    if not match:
        raise invalid(path, f"bad {what} port {text!r}; {_SHORT_HINT}")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if not 1 <= start <= end <= 65535:
        raise invalid(path, f"bad {what} port {text!r}: ports are 1-65535, ranges low-high")
    return start, end


def _address(text: str, path: str, version: int | None) -> str:
    """`text` if it is an IP address (of `version`, if given), else an error naming it."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        address = None
    if address is None or (version is not None and address.version != version):
        kind = {4: "an IPv4 address", 6: "an IPv6 address"}.get(version or 0, "an IP address")
        raise invalid(path, f"bad host IP {text!r}: not {kind}; {_SHORT_HINT}")
    return text


def _split_short(text: str, path: str) -> tuple[str | None, str, str]:
    """(host ip, published, target) of ``[[ip:]published:]target``.

    Strict: anything else is an error, never a wider binding (an unbracketed IPv6
    address or a stray field once turned ``127.0.0.1:18090:8000:9`` into a binding of
    port 8000 on every address).
    """
    if text.startswith("["):
        match = _BRACKETED.fullmatch(text)
        if not match:
            raise invalid(path, f"bad port {text!r}; {_SHORT_HINT}")
        return _address(match.group(1), path, 6), match.group(2), match.group(3)
    parts = text.split(":")
    if len(parts) == 1:
        return None, "", parts[0]
    if len(parts) == 2:
        if not parts[0]:
            raise invalid(path, f"bad port {text!r}: empty host port; {_SHORT_HINT}")
        return None, parts[0], parts[1]
    # As Compose reads it: the last two fields are the ports, the rest is the address
    # (an IPv6 one may come without brackets, ::1:8080:80), and it must be one.
    address = _address(":".join(parts[:-2]), path, 4 if len(parts) == 3 else 6)
    return address, parts[-2], parts[-1]


def _short(spec: str | int, path: str) -> list[PortMapping]:
    text = str(spec).strip()
    text, _, protocol = text.partition("/")
    protocol = protocol or "tcp"
    if protocol not in _PROTOCOLS:
        raise invalid(path, f"bad protocol {protocol!r} (supported: {', '.join(_PROTOCOLS)})")
    host_ip, published, target = _split_short(text, path)
    low, high = _range(target, path, "container")
    base = {"host_ip": host_ip or None, "protocol": protocol}
    if not published:
        return [PortMapping(target=port, **base) for port in range(low, high + 1)]
    host_low, host_high = _range(published, path, "host")
    if low == high:
        return [PortMapping(target=low, published=published.strip(), **base)]
    if host_high - host_low != high - low:
        raise invalid(path, f"bad port {spec!r}: the host and container ranges differ in size")
    return [
        PortMapping(target=low + i, published=str(host_low + i), **base)
        for i in range(high - low + 1)
    ]


def _choice(raw: dict[str, Any], key: str, path: str, allowed: tuple[str, ...]) -> str | None:
    value = optional(raw, key, path, as_str)
    if value is not None and value not in allowed:
        raise invalid(child(path, key), f"bad {key} {value!r} (supported: {', '.join(allowed)})")
    return value


def _host_ip(value: Any, path: str) -> str:
    text = as_str(value, path).strip()
    return _address(text.removeprefix("[").removesuffix("]"), path, None)


def _long(raw: dict[str, Any], path: str) -> PortMapping:
    if "target" not in raw:
        raise invalid(path, "missing `target` (the container port)")
    target = as_int(raw["target"], child(path, "target"), minimum=1)
    if target > 65535:
        raise invalid(child(path, "target"), f"bad container port {target}")
    published = optional(raw, "published", path, as_str)
    if published is not None:
        _range(published, child(path, "published"), "host")
    fields: dict[str, Any] = {
        "target": target,
        "published": published.strip() if published else None,
        "host_ip": optional(raw, "host_ip", path, _host_ip),
        "name": optional(raw, "name", path, as_str),
        "app_protocol": optional(raw, "app_protocol", path, as_str),
    }
    protocol = _choice(raw, "protocol", path, _PROTOCOLS)
    mode = _choice(raw, "mode", path, _MODES)
    if protocol:
        fields["protocol"] = protocol
    if mode:
        fields["mode"] = mode
    return PortMapping(**fields)


def normalize_ports(value: Any, path: str) -> list[PortMapping]:
    """Every port mapping, ranges of the short syntax expanded to one mapping per port."""
    mappings: list[PortMapping] = []
    for index, entry in enumerate(expect_list(value, path)):
        where = item(path, index)
        expect(entry, where, ("string", "integer", "mapping"))
        if isinstance(entry, dict):
            mappings.append(_long(entry, where))
        else:
            mappings.extend(_short(entry, where))
    return mappings


def normalize_expose(value: Any, path: str) -> list[str]:
    exposed: list[str] = []
    for index, entry in enumerate(expect_list(value, path)):
        where = item(path, index)
        text = as_str(entry, where).strip()
        if not _EXPOSE.fullmatch(text):
            raise invalid(where, f"bad port {text!r} (expected PORT[-PORT][/PROTOCOL])")
        exposed.append(text)
    return exposed
