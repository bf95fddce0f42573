"""Task groups that fail the way callers expect: with the first real error, not a group."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.abc import TaskGroup

from .._exceptions import ApiError

__all__ = ["task_group"]


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        exc = pending.pop(0)
        if isinstance(exc, BaseExceptionGroup):
            pending[:0] = list(exc.exceptions)
        else:
            leaves.append(exc)
    # A dxflow error says what went wrong; the cancellations it caused say nothing.
    return next((e for e in leaves if isinstance(e, ApiError)), leaves[0])


@asynccontextmanager
async def task_group() -> AsyncIterator[TaskGroup]:
    """`anyio.create_task_group()`, raising the first dxflow error of its tasks as itself."""
    try:
        async with anyio.create_task_group() as group:
            yield group
    except BaseExceptionGroup as errors:
        raise _first(errors) from None
