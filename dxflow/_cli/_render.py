"""What the CLI prints, as text, in the standard library alone.

Tables, key/value blocks and --json text, and the whole output of the read commands the
pre-click fast path answers (`ps`, `workflow list`, `ping`, `whoami`). The click
commands print these same functions' text, so both paths print the same bytes; this
module loads neither click nor the models (a value only needs attributes, and
`model_dump_json`/`model_dump` for --json, as the models and the lean path's `Record`
have).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "cell",
    "json_text",
    "key_values_text",
    "ping_text",
    "ps_text",
    "status_table",
    "table_text",
    "whoami_text",
    "workflows_text",
]


def json_text(value: Any) -> str:
    """--json output: a dict as is, a model (or Record) as its JSON, a list of them as a list."""
    if isinstance(value, dict):
        return json.dumps(value, indent=2, default=str)
    if not isinstance(value, Sequence):
        return str(value.model_dump_json(indent=2))
    return json.dumps([item.model_dump(mode="json") for item in value], indent=2)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    # A value is a datetime only once the module is loaded: `ps` never loads it for this.
    datetime = sys.modules.get("datetime")
    if datetime is not None and isinstance(value, datetime.datetime):
        return str(value.astimezone().strftime("%Y-%m-%d %H:%M:%S"))
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def table_text(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(line.rstrip() for line in lines)


def key_values_text(pairs: Iterable[tuple[str, Any]]) -> str:
    items = [(k, cell(v)) for k, v in pairs]
    width = max((len(k) for k, _ in items), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in items)


# -- the read commands' whole output (each line ends with a newline) ----------------------


def status_table(status: Any, project: str) -> str:
    """A project's containers as `ps` and `up -d` show them (a service without any: a row);
    on runtime swarm its tasks, as `docker stack ps` shows them."""
    if any(getattr(s, "tasks", None) for s in status.services):
        return _tasks_table(status, project)
    rows = [
        (c.name, s.name, c.state, c.health, c.exit_code, " ".join(c.ports))
        for s in status.services for c in s.containers
    ]  # fmt: skip
    rows += [(f"{project}-{s.name}", s.name, s.state, s.health, s.exit_code, "")
             for s in status.services if not s.containers]  # fmt: skip
    return table_text(rows, ["name", "service", "state", "health", "exit", "ports"])


def _tasks_table(status: Any, project: str) -> str:
    rows = [
        (f"{project}_{s.name}.{t.slot or t.node}", s.name, t.state, t.desired_state, t.node,
         t.exit_code, ("rescheduled " if t.rescheduled else "") + (t.error or ""))
        for s in status.services for t in s.tasks
    ]  # fmt: skip
    rows += [(f"{project}_{s.name}", s.name, s.state, "", "", s.exit_code, "")
             for s in status.services if not s.tasks]  # fmt: skip
    return table_text(rows, ["name", "service", "state", "desired", "node", "exit", "error"])


def ps_text(status: Any, project: str, as_json: bool, only_services: bool, quiet: bool) -> str:
    if as_json:
        return json_text(status) + "\n"
    if only_services:
        return "".join(f"{service.name}\n" for service in status.services)
    if quiet:
        return "".join(f"{c.id}\n" for service in status.services for c in service.containers)
    return status_table(status, project) + "\n"


def workflows_text(found: Sequence[Any], as_json: bool) -> str:
    if as_json:
        return json_text(found) + "\n"
    rows = [(w.name, ",".join(w.services), w.created_at, w.working_dir) for w in found]
    return table_text(rows, ["name", "services", "created", "working dir"]) + "\n"


def whoami_text(me: Any, as_json: bool) -> str:
    if as_json:
        return json_text(me) + "\n"
    pairs = [("identity", me.identity), ("permissions", me.permissions), ("engine", me.engine_id)]
    return key_values_text(pairs) + "\n"


def ping_text(pong: Any, elapsed_ms: float, as_json: bool) -> str:
    if as_json:
        timed = {**pong.model_dump(mode="json"), "round_trip_ms": round(elapsed_ms, 3)}
        return json_text(timed) + "\n"
    return f"pong from {pong.engine_id} as {pong.identity} in {elapsed_ms:.1f} ms\n"
