"""Durations (``1m30s``, ``10s``, ``1.5s``, ``100ms``) and byte sizes (``64m``, ``1gb``)."""

from __future__ import annotations

import re

__all__ = ["parse_bytes", "parse_duration"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")
_BYTES = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)", re.IGNORECASE)
_BYTE_POWER = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_duration(value: str | int | float) -> float:
    """Seconds in a Go-style duration; a bare number is seconds. ValueError when malformed."""
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: negative")
        return float(value)
    text = value.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"bad duration {value!r} (e.g. 1m30s, 10s, 1.5s, 100ms)")
    total = sum(float(n) * _DURATION_UNIT[unit] for n, unit in _DURATION_PART.findall(text))
    return round(total, 9)


def parse_bytes(value: str | int) -> int:
    """Bytes in a size: an integer, or a number with a binary unit (``512k``, ``64m``, ``1gb``)."""
    if isinstance(value, bool):
        raise ValueError(f"bad byte size {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"bad byte size {value!r}: negative")
        return value
    match = _BYTES.fullmatch(value.strip())
    if not match:
        raise ValueError(f"bad byte size {value!r} (e.g. 1024, 512k, 64m, 1g, 1gb)")
    number, unit, _suffix = match.groups()
    return int(float(number) * 1024 ** _BYTE_POWER[unit.lower()])
