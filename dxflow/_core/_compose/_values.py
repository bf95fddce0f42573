"""Typed readers of document values: each names the path of what it rejects.

Interpolation turns every value it touches into a string, so the readers of integers,
numbers and booleans accept their string spellings too (``replicas: ${N:-2}``).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any, TypeVar

from ..._durations import parse_duration, parse_size
from ._errors import child, invalid, item

__all__ = [
    "KINDS",
    "as_bool",
    "as_bytes",
    "as_command",
    "as_duration",
    "as_float",
    "as_int",
    "as_mode",
    "as_str",
    "as_str_list",
    "as_str_map",
    "describe",
    "expect",
    "expect_list",
    "expect_mapping",
    "key_values",
    "named_entries",
    "optional",
]

T = TypeVar("T")

KINDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "list": "a list",
    "mapping": "a mapping",
    "null": "null",
}
_TRUE = {"true", "yes", "y", "on"}
_FALSE = {"false", "no", "n", "off"}


def describe(value: Any) -> str:
    """What `value` is, in the words of the error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _matches(value: Any, kind: str) -> bool:
    scalar = isinstance(value, str | int | float) and not isinstance(value, bool)
    checks: dict[str, Callable[[Any], bool]] = {
        "string": lambda v: scalar,
        "integer": lambda v: isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)),
        "number": lambda v: scalar,
        "boolean": lambda v: isinstance(v, bool | str),
        "list": lambda v: isinstance(v, list),
        "mapping": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    return checks[kind](value)


def expect(value: Any, path: str, kinds: tuple[str, ...]) -> None:
    """Raise unless `value` is one of `kinds` (names of `KINDS`)."""
    if any(_matches(value, kind) for kind in kinds):
        return
    words = [KINDS[kind] for kind in kinds]
    wanted = words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]
    raise invalid(path, f"expected {wanted}, got {describe(value)}")


def expect_mapping(value: Any, path: str) -> dict[str, Any]:
    expect(value, path, ("mapping",))
    for key in value:
        if not isinstance(key, str):
            raise invalid(path, f"keys must be strings, got {key!r}")
    return dict(value)


def expect_list(value: Any, path: str) -> list[Any]:
    expect(value, path, ("list",))
    return list(value)


def named_entries(value: Any, path: str) -> dict[str, Any]:
    """A mapping keyed by names the user chose (services, networks, ...), minus ``x-*`` keys."""
    return {k: v for k, v in expect_mapping(value, path).items() if not k.startswith("x-")}


def as_str(value: Any, path: str) -> str:
    expect(value, path, ("string",))
    return value if isinstance(value, str) else str(value)


def as_int(value: Any, path: str, *, minimum: int | None = 0) -> int:
    expect(value, path, ("integer",))
    try:
        number = int(value.strip()) if isinstance(value, str) else int(value)
    except ValueError:
        raise invalid(path, f"expected an integer, got {value!r}") from None
    if minimum is not None and number < minimum:
        raise invalid(path, f"must be at least {minimum}, got {number}")
    return number


def as_float(value: Any, path: str) -> float:
    expect(value, path, ("number",))
    try:
        number = float(value)
    except ValueError:
        raise invalid(path, f"expected a number, got {value!r}") from None
    if number < 0 or number != number:
        raise invalid(path, f"must be a positive number, got {value!r}")
    return number


def as_bool(value: Any, path: str) -> bool:
    expect(value, path, ("boolean",))
    if isinstance(value, bool):
        return value
    word = value.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise invalid(path, f"expected a boolean (true or false), got {value!r}")


def as_duration(value: Any, path: str) -> float:
    expect(value, path, ("string",))
    try:
        return parse_duration(value, grammar="compose")
    except ValueError as exc:
        raise invalid(path, str(exc)) from None


def as_bytes(value: Any, path: str) -> int:
    expect(value, path, ("string",))
    try:
        return parse_size(value if isinstance(value, str | int) else str(value), grammar="compose")
    except ValueError as exc:
        raise invalid(path, str(exc)) from None


def as_mode(value: Any, path: str) -> int:
    """A file mode: an integer as the YAML wrote it (``0440`` is octal), or an octal string."""
    expect(value, path, ("integer",))
    if isinstance(value, int):
        mode = value
    else:
        text = value.strip().removeprefix("0o")
        try:
            mode = int(text, 8)
        except ValueError:
            raise invalid(path, f"bad file mode {value!r} (an octal number, e.g. 0440)") from None
    if not 0 <= mode <= 0o7777:
        raise invalid(path, f"bad file mode {value!r}")
    return mode


def as_str_list(value: Any, path: str, *, single: bool = False) -> list[str]:
    """A list of strings; with `single`, one string stands for a list of one."""
    if single and not isinstance(value, list):
        return [as_str(value, path)]
    return [as_str(entry, item(path, i)) for i, entry in enumerate(expect_list(value, path))]


def as_command(value: Any, path: str) -> list[str]:
    """A command: a list as is, or a string split the way a POSIX shell would."""
    expect(value, path, ("string", "list"))
    if isinstance(value, list):
        return as_str_list(value, path)
    try:
        return shlex.split(as_str(value, path))
    except ValueError as exc:
        raise invalid(path, f"cannot split {value!r}: {exc}") from None


def _scalar_or_none(value: Any, path: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return as_str(value, path)


def key_values(value: Any, path: str, *, sep: str = "=") -> dict[str, str | None]:
    """``["K=V", "K"]`` or ``{K: V, K: null}``; a key without a value maps to None."""
    expect(value, path, ("list", "mapping"))
    result: dict[str, str | None] = {}
    if isinstance(value, dict):
        for key, raw in expect_mapping(value, path).items():
            result[key] = _scalar_or_none(raw, child(path, key))
        return result
    for i, entry in enumerate(value):
        text = as_str(entry, item(path, i))
        key, found, rest = text.partition(sep)
        if not key.strip():
            raise invalid(item(path, i), f"expected KEY{sep}VALUE or KEY, got {text!r}")
        result[key.strip()] = rest if found else None
    return result


def as_str_map(value: Any, path: str) -> dict[str, str]:
    """A map of strings from a list or a mapping; a key without a value maps to ''."""
    return {k: v or "" for k, v in key_values(value, path).items()}


def optional(raw: dict[str, Any], key: str, path: str, read: Callable[[Any, str], T]) -> T | None:
    """`read` applied to ``raw[key]`` when present, else None."""
    return read(raw[key], child(path, key)) if key in raw else None
