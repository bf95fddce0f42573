"""How dxflow's results look to a person: one-line reprs, text for print(), HTML for Jupyter.

pandas is the yardstick: a result shown in a notebook is a table, `print()` gives the text
the CLI shows (a table like `ps` or `ls -l`, or key/value lines), and `repr()` is one short
line (ids cut to 12 hex digits as docker does, human sizes and times).

A model's look is a `View` registered here under the model's class name (see `_views`),
so the models themselves only carry three small methods (`Response` in `_models._base`)
and this module imports nothing heavy: it loads on the first repr.
"""

from __future__ import annotations

import html
import re
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

__all__ = [
    "MAX_ROWS",
    "STYLE",
    "Block",
    "Listing",
    "View",
    "cell",
    "clip",
    "html_of",
    "human_bytes",
    "human_duration",
    "human_time",
    "log_html",
    "log_text",
    "register",
    "short_id",
    "summary_of",
    "text_of",
]

T = TypeVar("T")

MAX_ROWS = 500
"""Rows an HTML table shows at most (a listing of 100,000 files must not freeze a notebook)."""
SUMMARY_WIDTH = 200
"""A repr is one line of at most this many characters."""

# -- values -------------------------------------------------------------------------------


def human_bytes(value: float | None) -> str:
    """1536 -> "1.5 KiB" (binary units, as `ls -lh` and `docker stats`)."""
    if value is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError


_HEX_ID = re.compile(r"^(sha256:)?([0-9a-f]{32,})$")


def short_id(value: str | None, length: int = 12) -> str:
    """A long hex id (a container's, an image digest) cut to `length` digits, as docker
    shows them; any other text unchanged."""
    if value is None:
        return "-"
    found = _HEX_ID.match(value)
    return found.group(2)[:length] if found else value


def _plural(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def human_duration(seconds: float) -> str:
    """42 -> "42 seconds", 7200 -> "2 hours" (the largest unit, rounded down)."""
    seconds = abs(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            return _plural(int(seconds // size), unit)
    return _plural(int(seconds), "second")


def _aware(when: datetime) -> datetime:
    return when if when.tzinfo is not None else when.astimezone()


def human_time(when: datetime | None, now: datetime | None = None) -> str:
    """ "3 minutes ago", "in 59 minutes", "just now"; beyond a week the date itself."""
    if when is None:
        return "-"
    delta = ((now or datetime.now(UTC)) - _aware(when)).total_seconds()
    if abs(delta) < 2:
        return "just now"
    if abs(delta) > 7 * 86400:
        return _aware(when).astimezone().strftime("%Y-%m-%d %H:%M")
    span = human_duration(delta)
    return f"{span} ago" if delta > 0 else f"in {span}"


def local_time(when: datetime | None) -> str:
    """A time as the CLI prints it: local, to the second."""
    return "-" if when is None else _aware(when).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def cell(value: Any) -> str:
    """A value as one table cell: None "-", times local, lists joined by commas."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def clip(text: str, width: int = SUMMARY_WIDTH) -> str:
    """One line of at most `width` characters (control characters shown as escapes)."""
    line = text.replace("\r", "\\r").replace("\n", "\\n")
    return line if len(line) <= width else line[: width - 1] + "…"


# -- blocks: a titled table or key/value list, rendered as text or HTML ------------------


@dataclass
class Block:
    """A table (`headers` given) or key/value pairs (`headers` None), with a title."""

    rows: Sequence[Sequence[Any]]
    headers: Sequence[str] | None = None
    title: str | None = None
    note: str | None = None
    """A line under the table (rows left out, a total)."""


def _text_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> list[str]:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return [line.rstrip() for line in lines]


def _text_block(block: Block) -> str:
    cells = [[cell(v) for v in row] for row in block.rows]
    if block.headers is None:
        width = max((len(k) for k, *_ in cells), default=0)
        lines = [f"{k.ljust(width)}  {v}" for k, v in cells]
    else:
        lines = _text_table(cells, block.headers)
    if block.title:
        lines.insert(0, block.title)
    if block.note:
        lines.append(block.note)
    return "\n".join(lines)


# One small scoped style per output, as pandas does: no external assets, and a 500-row
# table does not repeat it per cell (classic Jupyter right-aligns cells otherwise).
STYLE = (
    "<style>"
    "table.dxflow{border-collapse:collapse;font-size:12px;margin:2px 0}"
    "table.dxflow td,table.dxflow th{text-align:left;padding:1px 8px;vertical-align:top;"
    "white-space:pre}"
    "table.dxflow thead th{border-bottom:1px solid #999}"
    "table.dxflow caption{text-align:left;caption-side:top;font-weight:bold;padding:2px 0}"
    "div.dxflow-note{color:#777;font-size:11px}"
    "</style>"
)


def _html_block(block: Block) -> str:
    e = html.escape
    rows = list(block.rows)
    hidden = max(0, len(rows) - MAX_ROWS)
    parts = ['<table class="dxflow">']
    if block.title:
        parts.append(f"<caption>{e(block.title)}</caption>")
    if block.headers is None:
        for key, value in rows[:MAX_ROWS]:
            parts.append(f"<tr><th>{e(cell(key))}</th><td>{e(cell(value))}</td></tr>")
    else:
        parts.append("<thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in block.headers))
        parts.append("</tr></thead><tbody>")
        for row in rows[:MAX_ROWS]:
            parts.append("<tr>" + "".join(f"<td>{e(cell(v))}</td>" for v in row) + "</tr>")
        parts.append("</tbody>")
    parts.append("</table>")
    notes = [block.note] if block.note else []
    if hidden:
        notes.append(f"… {hidden} more rows not shown (print() or iterate for all of them)")
    parts += [f'<div class="dxflow-note">{e(note)}</div>' for note in notes]
    return "".join(parts)


def blocks_text(blocks: Iterable[Block]) -> str:
    return "\n\n".join(_text_block(b) for b in blocks)


def blocks_html(blocks: Iterable[Block]) -> str:
    return f'<div class="dxflow">{STYLE}' + "".join(_html_block(b) for b in blocks) + "</div>"


# -- views: how each model looks ---------------------------------------------------------


@dataclass
class View:
    """How one model class looks: `summary` is the repr's text between `<Class ` and `>`;
    `blocks` is what print() and Jupyter show (or `text`/`html` for a look of its own);
    `columns` + `row` make it a row of a table when a list of them is shown."""

    summary: Callable[[Any], str]
    blocks: Callable[[Any], list[Block]] | None = None
    text: Callable[[Any], str] | None = None
    html: Callable[[Any], str] | None = None
    columns: Sequence[str] = ()
    row: Callable[[Any], Sequence[Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_VIEWS: dict[str, View] = {}


def register(*names: str, **view: Any) -> None:
    """Register the look of the model classes `names` (see `View`)."""
    for name in names:
        _VIEWS[name] = View(**view)


def _view(value: object) -> View | None:
    if not _VIEWS:
        from . import _views, _views_bridges, _views_handles, _views_proxies  # noqa: F401

    for cls in type(value).__mro__:
        found = _VIEWS.get(cls.__name__)
        if found is not None:
            return found
    return None


def _safe(render: Callable[[object], str | None]) -> Callable[[object], str | None]:
    """A look that fails (a half-built model, a debugger's view of one) falls back to
    pydantic's instead of raising from repr()."""

    def safe(value: object) -> str | None:
        try:
            return render(value)
        except Exception:
            return None

    safe.__doc__, safe.__name__ = render.__doc__, render.__name__
    return safe


@_safe
def summary_of(value: object) -> str | None:
    """`<Class summary>`, one line; None when the class has no view."""
    view = _view(value)
    if view is None:
        return None
    head = f"<{type(value).__name__} "
    return head + clip(view.summary(value), SUMMARY_WIDTH - len(head) - 1) + ">"


@_safe
def text_of(value: object) -> str | None:
    """What print() shows; None when the class has no view."""
    view = _view(value)
    if view is None:
        return None
    if view.text is not None:
        return view.text(value)
    if view.blocks is not None:
        return blocks_text(view.blocks(value))
    if view.row is not None:
        return blocks_text([Block([view.row(value)], view.columns)])
    return view.summary(value)


@_safe
def html_of(value: object) -> str | None:
    """What Jupyter shows; None when the class has no view (Jupyter then uses the repr)."""
    view = _view(value)
    if view is None:
        return None
    if view.html is not None:
        return view.html(value)
    if view.blocks is not None:
        return blocks_html(view.blocks(value))
    if view.row is not None:
        return blocks_html([Block([view.row(value)], view.columns)])
    return f"<code>{html.escape(summary_of(value) or '')}</code>"


def table_of(items: Sequence[Any], title: str | None = None) -> Block | None:
    """A list of one model as one table; None when they are not all rows of one view."""
    views = {id(_view(item)) for item in items}
    view = _view(items[0]) if items else None
    if view is None or view.row is None or len(views) != 1:
        return None
    return Block([view.row(item) for item in items], view.columns, title)


class Listing(list[T]):
    """A plain list (it compares, slices and serializes as one) that shows as a table
    in Jupyter and in print(), as a DataFrame would."""

    def _block(self) -> Block | None:
        return table_of(self)

    def __str__(self) -> str:
        block = self._block()
        return list.__repr__(self) if block is None else _text_block(block)

    def _repr_html_(self) -> str | None:
        block = self._block()
        if block is None:
            return None if self else "<i>(empty)</i>"
        return blocks_html([block])


# -- log lines ------------------------------------------------------------------------------

_PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#bcbd22")


def service_colour(service: str) -> str:
    """A stable colour per service name (crc32: the same in every process)."""
    return _PALETTE[zlib.crc32(service.encode()) % len(_PALETTE)]


def _prefix(line: Any) -> tuple[str, str]:
    stamp = f"{local_time(line.time)} " if line.time else ""
    return str(line.container or line.service), stamp


def log_text(lines: Sequence[Any]) -> str:
    """Lines as `docker compose logs` prints them: `container | line`, aligned."""
    width = max((len(line.container or line.service) for line in lines), default=0)
    out = []
    for line in lines:
        who, stamp = _prefix(line)
        out.append(f"{who.ljust(width)} | {stamp}{line.line}")
    return "\n".join(out)


def log_html(lines: Sequence[Any], note: str | None = None) -> str:
    """Lines in a <pre>, each prefix in its service's colour, stderr marked."""
    e = html.escape
    shown = list(lines)[-MAX_ROWS:]
    hidden = len(lines) - len(shown)
    width = max((len(line.container or line.service) for line in shown), default=0)
    out = []
    for line in shown:
        who, stamp = _prefix(line)
        colour = service_colour(line.service)
        text = e(line.line)
        if line.stream == "stderr":
            text = f'<span style="color:#c00">{text}</span>'
        out.append(f'<span style="color:{colour}">{e(who.ljust(width))} |</span> {e(stamp)}{text}')
    notes = [note] if note else []
    if hidden:
        notes.insert(0, f"… {hidden} earlier lines not shown (print() or iterate for all)")
    body = "\n".join(out) if out else "(no log lines)"
    head = "".join(f'<div style="color:#777;font-size:11px">{e(n)}</div>' for n in notes)
    return (
        f'<div class="dxflow">{head}<pre style="font-size:12px;line-height:1.3;margin:2px 0">'
        f"{body}</pre></div>"
    )
