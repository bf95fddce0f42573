"""Durations as people write them: ``90``, ``30s``, ``15m``, ``1h``, ``2d``, ``1h30m``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["parse_duration", "since_datetime"]

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
