"""Durations and byte sizes of compose files (the Compose grammar of dxflow._durations)."""

from __future__ import annotations

from functools import partial

import pytest

from dxflow import _durations

parse_duration = partial(_durations.parse_duration, grammar="compose")
parse_bytes = partial(_durations.parse_size, grammar="compose")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("10s", 10.0),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        ("100ms", 0.1),
        ("1h", 3600.0),
        ("1h2m3s4ms", 3723.004),
        ("2s500ms", 2.5),
        ("500us", 0.0005),
        ("250µs", 0.00025),
        ("10ns", 1e-8),
        (".5s", 0.5),
        ("0", 0.0),
        ("30", 30.0),
        (" 5s ", 5.0),
        (12, 12.0),
        (2.5, 2.5),
    ],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["10x", "", "s", "1d", "-5s", "1m 30s", "ten", "5s5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [-1, True])
def test_bad_duration_numbers(value: int) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("100b", 100),
        ("512k", 512 * 1024),
        ("512K", 512 * 1024),
        ("512kb", 512 * 1024),
        ("64m", 64 * 1024**2),
        ("64MB", 64 * 1024**2),
        ("64mib", 64 * 1024**2),
        ("1g", 1024**3),
        ("1gb", 1024**3),
        ("1.5g", int(1.5 * 1024**3)),
        ("2t", 2 * 1024**4),
        ("1 g", 1024**3),
    ],
)
def test_byte_sizes(text: str | int, size: int) -> None:
    assert parse_bytes(text) == size


@pytest.mark.parametrize("text", ["64q", "", "m", "1.g", "-1m", "1gbb", "ten"])
def test_bad_byte_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="bad byte size"):
        parse_bytes(text)
