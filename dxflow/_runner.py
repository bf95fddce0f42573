"""The blocking SDK's event loop: one private loop in a daemon thread per Engine.

A thread (rather than ``asyncio.run`` per call) lets the blocking `Engine` work inside
Jupyter, whose own loop is already running, and keeps the engine's background work
(streams, token renewal, later proxies) alive between calls.

Every blocking method is its async twin run by `Runner.run`. A hop to the loop thread
costs more than an in-process call that never waits, so `run` first tries the coroutine
on the caller's thread (a *trial*): one ``coroutine.send(None)`` with `in_trial()` true.
During a trial the engine runs an operation that never waits and changes nothing
directly (the dispatcher's inline path), and refuses everything else by raising
`NeedsLoop` before doing anything. A coroutine that finishes in its first step is done
(its value or its dxflow error is the answer); any other outcome (`NeedsLoop`, a
suspension, a RuntimeError from code that wants a running loop) closes it and runs the
whole method again on the loop thread.

The rule that makes the rerun safe: a facade method's code before its first operation
that needs the loop has no side effects that may not happen twice (read-only calls,
``mkdir(exist_ok=True)`` and the like are fine). Mutating operations never run in a
trial, so they cannot happen twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from ._exceptions import DxflowError, EngineClosed, UsageError

__all__ = ["NeedsLoop", "Runner", "in_trial"]

T = TypeVar("T")

_TRIAL: ContextVar[bool] = ContextVar("dxflow_trial", default=False)


class NeedsLoop(BaseException):
    """Raised inside a trial by an operation that needs the event loop.

    A BaseException, so that a facade's ``except Exception`` cannot swallow it.
    """


def in_trial() -> bool:
    """True while `Runner.run` tries a coroutine on the caller's thread."""
    return _TRIAL.get()


class Runner:
    def __init__(
        self, inline: bool = False, closed: Callable[[], EngineClosed] | None = None
    ) -> None:
        self.inline = inline
        """Try coroutines on the caller's thread first (see the module docstring)."""
        self._closed_error = closed or (lambda: EngineClosed("the engine was closed"))
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        if self._closed:
            raise self._closed_error()
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

    def run(self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T:
        """`function(*args, **kw)`'s result: tried on this thread, else run on the loop's."""
        if self.inline or self._closed:  # a closed engine answers in the trial: EngineClosed
            coroutine = function(*args, **kw)
            token = _TRIAL.set(True)
            try:
                coroutine.send(None)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            except DxflowError:
                raise
            except (NeedsLoop, Exception):
                coroutine.close()  # it needs the loop: rerun it there, from the start
            else:
                coroutine.close()  # it waited for something: the same
            finally:
                _TRIAL.reset(token)
        return self.run_on_loop(function, *args, **kw)

    def run_on_loop(
        self, function: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any
    ) -> T:
        """Run `function(*args, **kw)` on the loop thread and wait for its result."""
        loop = self._ensure()
        if _on_thread(self._thread):
            raise UsageError(
                "a blocking dxflow call from the engine's own loop (a progress callback?) "
                "would wait for itself; use the AsyncEngine there"
            )
        future = asyncio.run_coroutine_threadsafe(function(*args, **kw), loop)
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
        """Stop the loop thread; later calls raise EngineClosed. Idempotent."""
        self._closed = True
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


def _on_thread(thread: threading.Thread | None) -> bool:
    return thread is not None and thread is threading.current_thread()
