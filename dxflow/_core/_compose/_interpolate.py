"""Variable interpolation as the Compose specification defines it.

``$VAR`` and ``${VAR}`` take the value (empty when unset); ``${VAR:-d}`` / ``${VAR-d}``
fall back to ``d`` when VAR is unset or empty / unset; ``${VAR:?e}`` / ``${VAR?e}`` fail
with ``e`` when VAR is unset or empty / unset; ``${VAR:+a}`` / ``${VAR+a}`` give ``a``
when VAR is set and non-empty / set (else the value, i.e. empty); ``$$`` is a literal
``$``. Defaults, alternatives and messages are templates themselves, so
``${A:-${B:-x}}`` nests. They are evaluated only when used, as a POSIX shell does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import child, invalid, item

__all__ = ["InterpolationError", "Lookup", "interpolate", "interpolate_tree"]

Lookup = Callable[[str], str | None]

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """A malformed template or a required variable without a value."""

    def __init__(self, message: str, variable: str | None = None) -> None:
        super().__init__(message)
        self.variable = variable


@dataclass(frozen=True)
class _Var:
    name: str
    operator: str | None = None
    word: tuple[_Node, ...] = ()


_Node = str | _Var


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, why: str) -> InterpolationError:
        return InterpolationError(f"invalid interpolation format in {self.text!r}: {why}")

    def parse(self, pos: int, nested: bool) -> tuple[tuple[_Node, ...], int]:
        """Nodes from `pos` up to the end (or the `}` closing a nested word)."""
        nodes: list[_Node] = []
        literal: list[str] = []
        text = self.text
        while pos < len(text):
            char = text[pos]
            if nested and char == "}":
                break
            if char != "$":
                literal.append(char)
                pos += 1
                continue
            if text.startswith("$$", pos):
                literal.append("$")
                pos += 2
                continue
            if literal:
                nodes.append("".join(literal))
                literal = []
            node, pos = self.variable(pos + 1)
            nodes.append(node)
        else:
            if nested:
                raise self.fail("missing '}'")
        if literal:
            nodes.append("".join(literal))
        return tuple(nodes), pos

    def variable(self, pos: int) -> tuple[_Var, int]:
        """The variable after a `$` at `pos - 1`."""
        braced = self.text.startswith("{", pos)
        match = _NAME.match(self.text, pos + braced)
        if match is None:
            what = "'${' must be followed by a variable name" if braced else None
            raise self.fail(what or "'$' must be followed by a name, '{' or '$' ($$ is a '$')")
        name, pos = match.group(), match.end()
        if not braced:
            return _Var(name), pos
        if self.text.startswith("}", pos):
            return _Var(name), pos + 1
        operator = next((op for op in _OPERATORS if self.text.startswith(op, pos)), None)
        if operator is None:
            if pos >= len(self.text):
                raise self.fail("missing '}'")
            found = self.text[pos]
            raise self.fail(
                f"unexpected {found!r} after '${{{name}' (expected '}}' or an operator)"
            )
        word, pos = self.parse(pos + len(operator), nested=True)
        return _Var(name, operator, word), pos + 1


def _evaluate(nodes: tuple[_Node, ...], lookup: Lookup) -> str:
    return "".join(node if isinstance(node, str) else _substitute(node, lookup) for node in nodes)


def _substitute(var: _Var, lookup: Lookup) -> str:
    value = lookup(var.name)
    op = var.operator
    if op is None:
        return value or ""
    present = value is not None and (value != "" or not op.startswith(":"))
    if op in (":-", "-"):
        return value if present and value is not None else _evaluate(var.word, lookup)
    if op in (":+", "+"):
        return _evaluate(var.word, lookup) if present else value or ""
    if not present:
        message = _evaluate(var.word, lookup)
        detail = f": {message}" if message else ""
        raise InterpolationError(
            f"required variable {var.name} is missing a value{detail}", variable=var.name
        )
    return value or ""


def interpolate(text: str, lookup: Lookup) -> str:
    """`text` with its variables substituted; raises InterpolationError."""
    if "$" not in text:
        return text
    nodes, _ = _Parser(text).parse(0, nested=False)
    return _evaluate(nodes, lookup)


def interpolate_tree(value: Any, lookup: Lookup, path: str = "") -> Any:
    """A copy of a parsed document with every string value (never a key) interpolated."""
    if isinstance(value, str):
        try:
            return interpolate(value, lookup)
        except InterpolationError as exc:
            details = {"variable": exc.variable} if exc.variable else {}
            raise invalid(path, str(exc), **details) from None
    if isinstance(value, dict):
        return {k: interpolate_tree(v, lookup, child(path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_tree(v, lookup, item(path, i)) for i, v in enumerate(value)]
    return value
