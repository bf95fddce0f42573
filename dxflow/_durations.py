"""Durations and sizes as people write them: ``90s``, ``1h30m``; ``512``, ``10M``, ``2G``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_duration", "parse_size", "since_datetime"]

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | float | timedelta) -> float:
    """Seconds in `text`; raises ValueError naming the text when it is not a duration."""
    if isinstance(text, timedelta):
        return text.total_seconds()
    if isinstance(text, int | float):
        return float(text)
    value = text.strip().lower()
    try:
        return float(value)
    except ValueError:
        pass
    if not value or _PART.sub("", value):
        raise ValueError(f"{text!r} is not a duration (e.g. 90, 30s, 15m, 1h, 2d)")
    return sum(float(n) * _UNIT[unit] for n, unit in _PART.findall(value))


def since_datetime(since: datetime | timedelta | str | None) -> datetime | None:
    """A point in time from a datetime, an ISO string, or a duration meaning that long ago."""
    if since is None or isinstance(since, datetime):
        return since
    if isinstance(since, str):
        try:
            return datetime.fromisoformat(since)
        except ValueError:
            pass
    return datetime.now(UTC) - timedelta(seconds=parse_duration(since))


_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$")


def parse_size(text: str | int) -> int:
    """Bytes in `text` (`512`, `64K`, `10M`, `2G`, `1TiB`; binary units)."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a size (e.g. 512, 64K, 10M, 2G)")
    number, unit, _ = match.groups()
    return int(float(number) * 1024 ** " kmgtp".index(unit or " "))
