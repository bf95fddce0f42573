"""``ports`` (short and long syntax, host IPs, ranges, protocols) and ``expose``."""

from __future__ import annotations

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
_SHORT_HINT = "expected [[ip:]host:]container[/protocol], e.g. 8080:80 or 127.0.0.1:53:53/udp"


def _range(text: str, path: str, what: str) -> tuple[int, int]:
    match = _RANGE.fullmatch(text.strip())
    if not match:
        raise invalid(path, f"bad {what} port {text!r}: {_SHORT_HINT}")
    start = int(match.group(1))
    end = int(match.group(2) or start)
    if not 1 <= start <= end <= 65535:
        raise invalid(path, f"bad {what} port {text!r}: ports are 1-65535, ranges low-high")
    return start, end


def _split_short(text: str, path: str) -> tuple[str | None, str, str]:
    """(host ip, published, target) of ``[[ip:]published:]target``."""
    if text.startswith("["):
        match = re.fullmatch(r"\[([^\]]+)\]:([^:]*):([^:]+)", text)
        if not match:
            raise invalid(path, f"bad port {text!r}: {_SHORT_HINT}")
        return match.group(1), match.group(2), match.group(3)
    parts = text.split(":")
    if len(parts) == 1:
        return None, "", parts[0]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


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
        "host_ip": optional(raw, "host_ip", path, as_str),
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
