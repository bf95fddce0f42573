"""Dotenv files: ``KEY=VAL``, ``export KEY=VAL``, quotes, comments, interpolated values.

- blank lines and lines starting with ``#`` are skipped;
- ``'single quoted'`` values are literal and may span lines;
- ``"double quoted"`` values may span lines, understand ``\\n``, ``\\r``, ``\\t``,
  ``\\\\``, ``\\"`` and ``\\$``, and are interpolated;
- unquoted values end at an inline `` #`` comment, are trimmed and interpolated;
- a line holding only ``KEY`` takes KEY's value from `lookup`, if it has one.

Interpolation sees `lookup` first (the sources that win over the file anyway), then the
variables defined earlier in the file, then `defaults` (earlier files).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ._interpolate import InterpolationError, Lookup, interpolate

__all__ = ["DotenvError", "parse_dotenv"]

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_INLINE_COMMENT = re.compile(r"\s+#.*$")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "'": "'", "$": "$$"}


class DotenvError(ValueError):
    """A line that is not a variable definition; `line` is 1-based.

    The message names the line, never its text: what failed to parse may be a secret.
    """

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


def _never(_name: str) -> str | None:
    return None


class _Reader:
    def __init__(self, text: str, lookup: Lookup, defaults: Lookup) -> None:
        self.lines = text.removeprefix("\ufeff").replace("\r\n", "\n").split("\n")
        self.lookup = lookup
        self.defaults = defaults
        self.values: dict[str, str] = {}
        self.index = 0

    def resolve(self, name: str) -> str | None:
        found = self.lookup(name)
        if found is None:
            found = self.values.get(name)
        return self.defaults(name) if found is None else found

    def read(self) -> dict[str, str]:
        while self.index < len(self.lines):
            number = self.index + 1
            line = self.lines[self.index].strip()
            self.index += 1
            if line and not line.startswith("#"):
                try:
                    self.definition(line)
                except InterpolationError as exc:
                    # Never quote the line: an env file may be any file, a key among them.
                    what = "a required variable has no value" if exc.variable else None
                    raise DotenvError(number, what or "invalid variable reference") from None
                except ValueError as exc:
                    raise DotenvError(number, str(exc)) from None
        return self.values

    def definition(self, line: str) -> None:
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key, found, rest = line.partition("=")
        key = key.strip()
        if not _KEY.fullmatch(key):
            raise ValueError("expected KEY=VALUE, export KEY=VALUE, KEY or a # comment")
        if not found:
            value = self.lookup(key)
            if value is not None:
                self.values[key] = value
            return
        self.values[key] = self.value(rest.lstrip())

    def value(self, rest: str) -> str:
        if rest[:1] == "'":
            body = self.quoted(rest, "'")
            return body
        if rest[:1] == '"':
            return interpolate(_unescape(self.quoted(rest, '"')), self.resolve)
        return interpolate(_INLINE_COMMENT.sub("", rest).strip(), self.resolve)

    def quoted(self, rest: str, quote: str) -> str:
        """The text between `quote` and its closing twin, reading further lines if needed."""
        text = rest[1:]
        while True:
            end = _closing(text, quote)
            if end >= 0:
                break
            if self.index >= len(self.lines):
                raise ValueError(f"missing closing {quote} quote")
            text += "\n" + self.lines[self.index]
            self.index += 1
        trailing = text[end + 1 :].strip()
        if trailing and not trailing.startswith("#"):
            raise ValueError("unexpected text after the closing quote")
        return text[:end]


def _closing(text: str, quote: str) -> int:
    """Index of the closing quote in `text` (double quotes may be escaped), or -1."""
    pos = 0
    while pos < len(text):
        if quote == '"' and text[pos] == "\\":
            pos += 2
            continue
        if text[pos] == quote:
            return pos
        pos += 1
    return -1


def _unescape(body: str) -> str:
    """Escapes of a double-quoted value, keeping ``\\$`` literal through interpolation."""
    out: list[str] = []
    pos = 0
    while pos < len(body):
        char = body[pos]
        if char == "\\" and pos + 1 < len(body) and body[pos + 1] in _ESCAPES:
            out.append(_ESCAPES[body[pos + 1]])
            pos += 2
            continue
        out.append(char)
        pos += 1
    return "".join(out)


def parse_dotenv(
    text: str, lookup: Lookup | None = None, defaults: Callable[[str], str | None] | None = None
) -> dict[str, str]:
    """The variables a dotenv text defines, in order; raises DotenvError naming the line."""
    return _Reader(text, lookup or _never, defaults or _never).read()
