"""A guard on the files the loader reads from the engine host (compose and env files).

The loader reads files named by the caller; a workflow policy decides which of them a
caller may have read on its behalf. `load_project(..., read_guard=...)` installs a guard
for one load: each file is offered to it BEFORE it is opened; a refused file is recorded
by the guard and read as empty, so the load goes on and every refusal is reported at once,
and no byte of a refused file is ever read (nor quoted in an error).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = ["ReadGuard", "guarded_reads", "may_read"]

ReadGuard = Callable[[str, str], bool]
"""(absolute path, document path that named it) -> whether the file may be read."""

_GUARD: ContextVar[ReadGuard | None] = ContextVar("dxflow_compose_read_guard", default=None)


def may_read(path: str, where: str) -> bool:
    guard = _GUARD.get()
    return guard is None or guard(path, where)


@contextlib.contextmanager
def guarded_reads(guard: ReadGuard | None) -> Iterator[None]:
    token = _GUARD.set(guard)
    try:
        yield
    finally:
        _GUARD.reset(token)
