"""Durations and sizes as people write them, in the two grammars dxflow reads.

- ``"dxflow"`` (CLI flags, engine settings, SDK arguments): a duration is a number of
  seconds or parts with ``s m h d w`` (``90``, ``30s``, ``1h30m``, ``2d``); a size is a
  number of bytes or one with a binary unit (``512``, ``64K``, ``10M``, ``2G``, ``1TiB``).
- ``"compose"`` (what the Compose specification demands of a compose file): Go-style
  durations with ``ns us µs ms s m h`` and no days (``1m30s``, ``100ms``), byte sizes like
  ``512k``, ``64m``, ``1gb``; never negative, a boolean is not a number.

Each function takes the grammar as a keyword, so which one applies is said where the
text is read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = ["Grammar", "parse_duration", "parse_size", "since_datetime"]

Grammar = Literal["dxflow", "compose"]


@dataclass(frozen=True)
class _Durations:
    part: re.Pattern[str]
    units: dict[str, float]
    lower: bool
    """Units are matched case-insensitively."""
    signed: bool
    """A bare negative number is taken (dxflow's grammar never refused one)."""
    bad: str


_DURATIONS: dict[str, _Durations] = {
    "dxflow": _Durations(
        re.compile(r"(\d+(?:\.\d+)?)([smhdw])"),
        {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800},
        lower=True,
        signed=True,
        bad="{text!r} is not a duration (e.g. 90, 30s, 15m, 1h, 2d)",
    ),
    "compose": _Durations(
        re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)"),
        {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0},
        lower=False,
        signed=False,
        bad="bad duration {text!r} (e.g. 1m30s, 10s, 1.5s, 100ms)",
    ),
}
_NUMBER = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str | float | timedelta, *, grammar: Grammar = "dxflow") -> float:
    """Seconds in `text`; ValueError naming the text when it is not a duration."""
    rules = _DURATIONS[grammar]
    if isinstance(text, timedelta) and grammar == "dxflow":
        return text.total_seconds()
    if (isinstance(text, bool) and not rules.signed) or not isinstance(text, str | int | float):
        raise ValueError(rules.bad.format(text=text))
    if isinstance(text, int | float):
        if text < 0 and not rules.signed:
            raise ValueError(rules.bad.format(text=text) + ": negative")
        return float(text)
    value = text.strip().lower() if rules.lower else text.strip()
    if rules.signed:
        try:
            return float(value)
        except ValueError:
            pass
    elif _NUMBER.fullmatch(value):
        return float(value)
    if not value or rules.part.sub("", value):
        raise ValueError(rules.bad.format(text=text))
    total = sum(float(n) * rules.units[unit] for n, unit in rules.part.findall(value))
    return total if rules.signed else round(total, 9)


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


_SIZES = {
    "dxflow": re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?$"),
    "compose": re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)$"),
}
_SIZE_BAD = {
    "dxflow": "{text!r} is not a size (e.g. 512, 64K, 10M, 2G)",
    "compose": "bad byte size {text!r} (e.g. 1024, 512k, 64m, 1g, 1gb)",
}


def parse_size(text: str | int, *, grammar: Grammar = "dxflow") -> int:
    """Bytes in `text` (binary units: `64K` is 65,536 bytes)."""
    bad = _SIZE_BAD[grammar]
    if isinstance(text, bool) and grammar == "compose":
        raise ValueError(bad.format(text=text))
    if isinstance(text, int):
        if text < 0 and grammar == "compose":
            raise ValueError(bad.format(text=text) + ": negative")
        return text
    match = _SIZES[grammar].match(text.strip().lower())
    if match is None:
        raise ValueError(bad.format(text=text))
    number, unit, _ = match.groups()
    return int(float(number) * 1024 ** " kmgtp".index(unit or " "))
