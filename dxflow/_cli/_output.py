"""Human output (tables, key/value blocks, byte sizes) and --json output, echoed by click;
the text itself is `_render`'s (shared with the pre-click fast path)."""

from __future__ import annotations

import os
import re
import shutil
import sys
import zlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

import click

from .._display import human_bytes
from ._render import json_text, key_values_text, table_text

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "LiveBlock",
    "Prefixer",
    "colour_of",
    "emit_json",
    "human_bytes",
    "is_terminal",
    "key_values",
    "live_output",
    "paint",
    "table",
    "table_text",
    "use_colour",
]


def emit_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    click.echo(json_text(value))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    click.echo(table_text(rows, headers))


def key_values(pairs: Iterable[tuple[str, Any]]) -> None:
    click.echo(key_values_text(pairs))


# -- terminals: colours and lines redrawn in place ----------------------------------------

_PALETTE = (36, 33, 32, 35, 34, 96, 93, 92, 95, 94)
"""Compose's rainbow: cyan, yellow, green, magenta, blue, then their bright twins."""


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


def use_colour(stream: TextIO | None = None, as_json: bool = False) -> bool:
    """ANSI colours: on a terminal only, never with --json or NO_COLOR (no-color.org)."""
    return not as_json and not os.environ.get("NO_COLOR") and is_terminal(stream)


def live_output(stream: TextIO | None = None, as_json: bool = False) -> bool:
    """Lines redrawn in place: on a terminal only; a pipe or --json gets one line per change."""
    return not as_json and is_terminal(stream)


def colour_of(name: str) -> int:
    """The same service gets the same colour in every command and every run."""
    return _PALETTE[zlib.crc32(name.encode()) % len(_PALETTE)]


def paint(text: str, code: int, enabled: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if enabled else text


class Prefixer:
    """`web-1  | ` in front of each log line, aligned and coloured by service like compose."""

    def __init__(self, names: Iterable[str] = (), colour: bool = False) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.colour = colour

    def __call__(self, name: str, service: str, line: str) -> str:
        self.width = max(self.width, len(name))
        prefix = paint(f"{name.ljust(self.width)} |", colour_of(service), self.colour)
        return f"{prefix} {line}"


class LiveBlock:
    """One line per key (a container, a network), redrawn in place on a terminal.

    Lines printed with `note` scroll above the block (build output, warnings). When not
    live (a pipe, a file), every change is a line of its own: nothing is redrawn, so a
    log file reads as a history.
    """

    def __init__(self, stream: TextIO | None = None, live: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.live = live
        self.rows: dict[str, str] = {}
        self._drawn = 0

    def set(self, key: str, text: str) -> None:
        self.update({key: text})

    def update(self, rows: dict[str, str]) -> None:
        """Change some lines at once: one redraw on a terminal, a line per change piped."""
        changed = {k: v for k, v in rows.items() if self.rows.get(k) != v}
        self.rows.update(changed)
        if not self.live:
            return self._write("".join(f"{text}\n" for text in changed.values()))
        if changed:
            self._erase()
            self._draw()

    def note(self, text: str) -> None:
        if not self.live:
            return self._write(text + "\n")
        self._erase()
        self._write(text + "\n")
        self._draw()

    def _erase(self) -> None:
        if self._drawn:  # to the start of the block's first line, then clear to the end
            self._write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _draw(self) -> None:
        width = shutil.get_terminal_size().columns
        # A line wider than the terminal would wrap and break the count of lines to go up.
        self._write("".join(f"{_clip(text, width - 1)}\n" for text in self.rows.values()))
        self._drawn = len(self.rows)

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _clip(text: str, width: int) -> str:
    """At most `width` visible characters (colour codes do not count)."""
    if len(_ANSI.sub("", text)) <= width:
        return text
    plain = _ANSI.sub("", text)
    return plain[: max(width - 1, 0)] + "…"
