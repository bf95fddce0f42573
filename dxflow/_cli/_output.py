"""Human output (tables, key/value blocks, byte sizes) and --json output."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from .._display import human_bytes

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["emit_json", "human_bytes", "key_values", "table"]


def emit_json(value: BaseModel | Sequence[BaseModel] | dict[str, Any]) -> None:
    if isinstance(value, dict):
        text = json.dumps(value, indent=2, default=str)
    elif not isinstance(value, Sequence):
        text = value.model_dump_json(indent=2)
    else:
        text = json.dumps([item.model_dump(mode="json") for item in value], indent=2)
    click.echo(text)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    click.echo("\n".join(line.rstrip() for line in lines))


def key_values(pairs: Iterable[tuple[str, Any]]) -> None:
    items = [(k, _cell(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    click.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in items))
