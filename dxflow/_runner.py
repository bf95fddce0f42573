"""The blocking SDK's event loop: one private loop in a daemon thread per Engine.

A thread (rather than ``asyncio.run`` per call) lets the blocking `Engine` work inside
Jupyter, whose own loop is already running, and keeps the engine's background work
(streams, token renewal, later proxies) alive between calls.
"""

from __future__ import annotations

import asyncio
import contextlib
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
        """Walk an async iterator from blocking code.

        One task on the loop drives the whole iteration (async generators that hold a
        task group or cancel scope must not hop between tasks); items come back through
        a bounded queue, so a slow reader slows the producer down.
        """
        loop = self._ensure()
        queue: asyncio.Queue[tuple[bool, Any]] = asyncio.Queue(maxsize=256)

        async def pump() -> None:
            try:
                async for item in iterator:
                    await queue.put((False, item))
            except Exception as exc:  # handed to the reader, who re-raises it
                await queue.put((True, exc))
            else:
                await queue.put((True, None))

        task = asyncio.run_coroutine_threadsafe(pump(), loop)
        try:
            while True:
                future = asyncio.run_coroutine_threadsafe(queue.get(), loop)
                done, item = future.result()
                if done:
                    if item is not None:
                        raise item
                    return
                yield item
        finally:
            task.cancel()  # the reader left early: stop the producer on the engine side

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def finish() -> None:
            # Streams still open (an abandoned iterator) end here, on their own loop.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5) if tasks else None

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(finish(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()
        self._loop = self._thread = None
