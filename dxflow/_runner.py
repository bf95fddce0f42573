"""The blocking SDK's event loop: one private loop in a daemon thread per Engine.

A thread (rather than ``asyncio.run`` per call) lets the blocking `Engine` work inside
Jupyter, whose own loop is already running, and keeps the engine's background work
(streams, token renewal, later proxies) alive between calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["Runner"]

T = TypeVar("T")


class Runner:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            with self._lock:
                if self._loop is None:
                    loop = asyncio.new_event_loop()
                    thread = threading.Thread(
                        target=loop.run_forever, name="dxflow-engine", daemon=True
                    )
                    thread.start()
                    self._loop, self._thread = loop, thread
        return self._loop

    def run(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Run `function(*args)` on the loop thread and wait for its result."""
        future = asyncio.run_coroutine_threadsafe(function(*args), self._ensure())
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in a notebook stops the call on the engine side too
            raise

    def iterate(self, iterator: AsyncIterator[T]) -> Iterator[T]:
        """Walk an async iterator from blocking code, one item per hop."""
        loop = self._ensure()
        try:
            while True:
                future = asyncio.run_coroutine_threadsafe(_next(iterator), loop)
                try:
                    done, item = future.result()
                except BaseException:
                    future.cancel()
                    raise
                if done:
                    return
                yield item  # type: ignore[misc]  # not None when not done
        finally:
            closer = getattr(iterator, "aclose", None)
            if closer is not None and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(closer(), loop).result()

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None


async def _next(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return False, await iterator.__anext__()
    except StopAsyncIteration:
        return True, None
