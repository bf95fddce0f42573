"""What `Workflow.logs()` returns: an iterator of `LogLine`, as before, that also shows as
log lines (Jupyter, print, repr).

Showing a finished stream reads it to its end (the lines stay in a buffer, so iterating
afterwards still yields them); showing a live one (`follow=True`) never waits: it shows
the lines already read and says that it is a live stream.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from .._display import Listing, log_html, log_text
from .._models import LogLine

__all__ = ["AsyncLogs", "LogLines", "Logs"]


class LogLines(Listing[LogLine]):
    """A list of log lines that shows as `docker compose logs` does."""

    def __str__(self) -> str:
        return log_text(self)

    def _repr_html_(self) -> str:
        return log_html(self)


class _Shown:
    """The display both twins share; subclasses hold `_buffer`, `_follow` and `_label`."""

    _buffer: deque[LogLine]
    _follow: bool
    _label: str

    def _read_all(self) -> None:
        """Read a finished stream to its end into the buffer (no-op for a live one)."""

    def _live_note(self) -> str | None:
        if not self._follow:
            return None
        return (f"logs of {self._label}: a live stream (follow=True) showing the "
                f"{len(self._buffer)} lines read so far; iterate it for the rest")  # fmt: skip

    def __str__(self) -> str:
        self._read_all()
        note = self._live_note()
        text = log_text(list(self._buffer))
        return f"{text}\n[{note}]" if note else text

    def __repr__(self) -> str:
        self._read_all()
        if self._follow:
            return f"<{type(self).__name__} of {self._label}: live stream, iterate it>"
        return log_text(list(self._buffer)) or f"<{type(self).__name__} of {self._label}: empty>"

    def _repr_html_(self) -> str:
        self._read_all()
        return log_html(list(self._buffer), self._live_note())


class Logs(_Shown, Iterator[LogLine]):
    """`Workflow.logs()`: iterate it for `LogLine`s; in Jupyter it shows the lines."""

    def __init__(self, lines: Iterator[LogLine], follow: bool, label: str) -> None:
        self._lines = lines
        self._follow = follow
        self._label = label
        self._buffer = deque()

    def __iter__(self) -> Logs:
        return self

    def __next__(self) -> LogLine:
        if self._buffer:
            return self._buffer.popleft()
        return next(self._lines)

    def _read_all(self) -> None:
        if not self._follow:
            self._buffer.extend(self._lines)

    def close(self) -> None:
        """Stop reading (the engine side of the stream ends too)."""
        if isinstance(self._lines, Generator):
            self._lines.close()


class AsyncLogs(_Shown, AsyncIterator[LogLine]):
    """`AsyncWorkflow.logs()`: `async for` it, or `await` it for a `LogLines` list that
    shows in Jupyter (a display cannot wait for an async stream)."""

    def __init__(self, lines: AsyncIterator[LogLine], follow: bool, label: str) -> None:
        self._lines = lines
        self._follow = True  # never read from a display: it would have to block the loop
        self._finite = not follow
        self._label = label
        self._buffer = deque()

    def __aiter__(self) -> AsyncLogs:
        return self

    async def __anext__(self) -> LogLine:
        if self._buffer:
            return self._buffer.popleft()
        return await anext(self._lines)

    def __await__(self) -> Generator[Any, None, LogLines]:
        return self._collect().__await__()

    async def _collect(self) -> LogLines:
        return LogLines([line async for line in self])

    def __repr__(self) -> str:
        return f"<AsyncLogs of {self._label}: {self._live_note()}>"

    def _live_note(self) -> str:
        how = "await it for the lines" if self._finite else "a live stream (follow=True)"
        return f"logs of {self._label}, async: {how}, or `async for line in ...`"

    async def aclose(self) -> None:
        close = getattr(self._lines, "aclose", None)
        if close is not None:
            await close()
