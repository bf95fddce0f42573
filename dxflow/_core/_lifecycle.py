"""The core's lifecycle: one task group owns every piece of background work.

A service registers its work with one call, before or after the core starts:

    core.lifecycle.every("audit.prune", 3600, audit.prune)   # a periodic job
    core.lifecycle.task("proxy.web", listener.serve)          # a long-running task

A periodic job runs when the core starts, then every `interval` seconds (`trigger(name)`
runs it at once). A blocking function runs in a worker thread, a coroutine function on
the loop. A long-running task starts with the core; if it fails it starts again after
RESTART_DELAY, and once it returns it is done. A failure is logged and the work goes on:
background work never stops the engine. `discard(name)` stops and forgets a job.

Who starts the core, and on which loop:

- the server: its Starlette lifespan (`async with core.lifecycle.running():`, in
  `dxflow_server/_app.py`), for as long as the engine serves;
- in-process: the LocalTransport that owns the core, on the loop of its first async call
  (the blocking Engine's loop thread starts lazily), until its `aclose`. Inline calls
  (run on the caller's thread) never need it; transports that share a core they do not
  own never start or stop it.

`start()` is synchronous and needs a running asyncio loop: the task group lives in a task
of its own there, so any task may start the core and any other may stop it. The first
runs come START_DELAY after the start (boot to healthy is not slowed down). `stop()`
cancels every job and waits for them, at most STOP_TIMEOUT seconds (a job in a worker
thread finishes its run first). Stopping a stopped core does nothing; it may start again.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import anyio
from anyio.abc import TaskGroup

__all__ = [
    "AUDIT_PRUNE_EVERY",
    "SHELL_REAP_EVERY",
    "TEMP_SWEEP_EVERY",
    "UPLOAD_SWEEP_EVERY",
    "Job",
    "Lifecycle",
]

log = logging.getLogger("dxflow.engine")

STOP_TIMEOUT = 5.0
"""Seconds `stop()` waits for the jobs to end (a graceful shutdown must stay quick)."""
RESTART_DELAY = 5.0
"""Seconds before a long-running task that failed starts again (no busy loop of errors)."""
START_DELAY = 1.0
"""Seconds between `start()` and the first runs: a server answers its first requests
before the background work imports its machinery (anyio's backend: ~80 ms) and runs."""

# The engine's own housekeeping. Nobody needs to tune these: each job is cheap and only
# bounds how long something already dead lingers.
AUDIT_PRUNE_EVERY = 3600.0
"""Audit records past `audit_retention` go at start and then hourly."""
SHELL_REAP_EVERY = 30.0
"""Holders of this engine that exited are collected (no zombies while the engine lives)."""
UPLOAD_SWEEP_EVERY = 600.0
"""Expired resumable uploads (past `upload_expiry`) are forgotten and their bytes freed."""
TEMP_SWEEP_EVERY = 3600.0
"""Temp files a crashed transfer left behind are removed (see `STALE_TEMP`)."""


@dataclass(eq=False)
class Job:
    """One piece of background work, and how it went (`runs`, `failures`)."""

    name: str
    function: Callable[[], Any]
    interval: float | None
    """Seconds between runs; None for a long-running task."""
    runs: int = 0
    """Runs that ended without an error (a task: 1 once it returned)."""
    failures: int = 0
    blocking: bool = field(init=False)
    _generation: int = field(default=0, repr=False)
    _scope: anyio.CancelScope | None = field(default=None, repr=False)
    _wake: anyio.Event | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.blocking = not inspect.iscoroutinefunction(self.function)
        if self.blocking and self.interval is None:
            raise ValueError(f"background task {self.name!r} must be a coroutine function")


class Lifecycle:
    """The registry of background work and the task group that runs it (see the module)."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._host: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._group: TaskGroup | None = None
        self._generation = 0
        self._ended = threading.Event()
        self._ended.set()

    @property
    def active(self) -> bool:
        """Started and not stopped (its jobs may still be starting)."""
        return self._host is not None

    @property
    def jobs(self) -> Mapping[str, Job]:
        return MappingProxyType(self._jobs)

    # -- registering ----------------------------------------------------------------------

    def every(self, name: str, interval: float, function: Callable[[], Any]) -> Job:
        """Run `function` at start and then every `interval` seconds."""
        if interval <= 0:
            raise ValueError(f"background job {name!r}: the interval must be positive")
        return self._add(Job(name, function, interval))

    def task(self, name: str, function: Callable[[], Awaitable[Any]]) -> Job:
        """Run the coroutine function `function` for as long as the core runs."""
        return self._add(Job(name, function, None))

    def _add(self, job: Job) -> Job:
        with self._lock:
            if job.name in self._jobs:
                raise ValueError(f"a background job named {job.name!r} exists")
            self._jobs[job.name] = job
        self._on_loop(self._launch, job)
        return job

    def discard(self, name: str) -> None:
        """Stop the job `name` (if it runs) and forget it."""
        with self._lock:
            job = self._jobs.pop(name, None)
        if job is not None:
            self._on_loop(self._cancel, job)

    def trigger(self, name: str) -> None:
        """Run the periodic job `name` now (once more, if it is running)."""
        self._on_loop(self._wake, self._jobs[name])

    # -- starting and stopping ------------------------------------------------------------

    def start(self) -> None:
        """Start the background work on the running loop (nothing if it runs already)."""
        with self._lock:
            if self._host is not None:
                return
            loop = asyncio.get_running_loop()
            self._ended.clear()
            self._loop = loop
            self._host = loop.create_task(self._serve(), name="dxflow-lifecycle")
            self._host.add_done_callback(self._on_end)

    async def stop(self) -> None:
        """Cancel every job and wait for them (bounded); nothing if not running."""
        host, loop = self._host, self._loop
        if host is None or loop is None:
            return
        if asyncio._get_running_loop() is loop:
            host.cancel()
            done, _ = await asyncio.wait({host}, timeout=STOP_TIMEOUT)
            ended = bool(done)
        else:  # started on another loop (an engine closed from another thread)
            with contextlib.suppress(RuntimeError):  # that loop is closed: its task is gone
                loop.call_soon_threadsafe(host.cancel)
            ended = await asyncio.to_thread(self._ended.wait, STOP_TIMEOUT)
        if not ended:
            log.warning("background work did not stop within %g s", STOP_TIMEOUT)

    def cancel(self) -> None:
        """Ask the background work to stop, from any thread, without waiting."""
        host, loop = self._host, self._loop
        if host is not None and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(host.cancel)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Lifecycle]:
        """Started on entry, stopped on exit (a server's lifespan)."""
        self.start()
        try:
            yield self
        finally:
            await self.stop()

    # -- on the loop ----------------------------------------------------------------------

    async def _serve(self) -> None:
        await asyncio.sleep(START_DELAY)
        async with anyio.create_task_group() as group:
            # One step with no await: a job added meanwhile is launched once, here or later.
            self._generation += 1
            self._group = group
            for job in list(self._jobs.values()):
                self._launch(job)
            await anyio.sleep_forever()

    def _on_end(self, host: asyncio.Task[None]) -> None:
        with self._lock:
            if self._host is host:
                self._host = self._loop = self._group = None
                self._ended.set()
        if not host.cancelled() and host.exception() is not None:
            log.error("background work ended: %r", host.exception())

    def _on_loop(self, function: Callable[[Job], None], job: Job) -> None:
        """`function(job)` on the loop of the background work, if it runs."""
        loop = self._loop
        if loop is None:
            return  # not running: the next start launches every registered job
        if asyncio._get_running_loop() is loop:
            function(job)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(function, job)

    def _launch(self, job: Job) -> None:
        group = self._group
        if (
            group is None
            or job._generation == self._generation
            or self._jobs.get(job.name) is not job
        ):
            return
        job._generation = self._generation
        group.start_soon(self._drive, job, name=f"dxflow job {job.name}")

    @staticmethod
    def _cancel(job: Job) -> None:
        if job._scope is not None:
            job._scope.cancel()

    @staticmethod
    def _wake(job: Job) -> None:
        if job._wake is not None:
            job._wake.set()

    async def _drive(self, job: Job) -> None:
        with anyio.CancelScope() as scope:
            job._scope = scope
            try:
                if job.interval is None:
                    await self._keep_running(job)
                else:
                    await self._periodically(job, job.interval)
            finally:
                job._scope = job._wake = None

    async def _periodically(self, job: Job, interval: float) -> None:
        while True:
            job._wake = anyio.Event()  # before the run: a trigger during it runs it again
            try:
                if job.blocking:
                    await anyio.to_thread.run_sync(job.function)
                else:
                    await job.function()
            except Exception:
                job.failures += 1
                log.exception(
                    "background job %s failed (it runs again in %g s)", job.name, interval
                )
            else:
                job.runs += 1
            with anyio.move_on_after(interval):
                await job._wake.wait()

    async def _keep_running(self, job: Job) -> None:
        while True:
            try:
                await job.function()
            except Exception:
                job.failures += 1
                log.exception(
                    "background task %s failed (it starts again in %g s)", job.name, RESTART_DELAY
                )
            else:
                job.runs += 1
                return
            await anyio.sleep(RESTART_DELAY)
