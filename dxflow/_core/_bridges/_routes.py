"""Which operation of the table a forwarded request is: for the master's audit log."""

from __future__ import annotations

import functools
import re

from ..._operations import OPERATIONS, Operation

__all__ = ["operation_at"]


@functools.cache
def _table() -> list[tuple[str, re.Pattern[str], Operation]]:
    rows = []
    for op in OPERATIONS.values():
        pattern = re.sub(r"\\{(\w+)\\}", r"[^/]+", re.escape(op.path))
        rows.append((op.method, re.compile(pattern + "$"), op))
    # Literal paths before templates: a literal segment is never a name.
    rows.sort(key=lambda row: row[2].path.count("{"))
    return rows


def operation_at(method: str, path: str) -> Operation | None:
    for verb, pattern, op in _table():
        if (verb == method or (op.kind == "channel" and method == "GET")) and pattern.match(path):
            return op
    return None
