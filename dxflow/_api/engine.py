"""`AsyncEngine` and its blocking twin `Engine`.

`AsyncEngine` is the native SDK: its primitives (`_call`, `_stream`, `_download`,
`_upload`, `_channel`, `_get_file`, `_put_file`) are the only code that touches the
transport, and every collection goes through them. `Engine` runs the same coroutines on
a private loop thread, except in-process operations that never wait, which it runs on
the caller's thread (see `dxflow._runner`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar, cast

from .. import _operations as ops
from .._display import Listing
from .._durations import since_datetime
from .._models import AuditRecord, EngineInfo, EngineStats, Health, Pong, Response, Token, WhoAmI
from .._operations import Operation
from .._runner import NeedsLoop, Runner, in_trial
from ._base import Blocking, EngineBase
from .bridges import AsyncBridges, AsyncFleet, Bridges, Fleet
from .keys import AsyncKeys, Keys
from .objects import AsyncObjectStore, ObjectStore
from .proxies import AsyncProxies, Proxies
from .shells import AsyncShells, Shells
from .workflows import AsyncWorkflows, Workflows

if TYPE_CHECKING:
    from .._transports._base import Download, Progress

__all__ = ["AsyncEngine", "Engine", "EngineBase"]

Since = datetime | timedelta | str | None


def _audit_params(
    since: Since, identity: str | None, operation: str | None, limit: int
) -> dict[str, Any]:
    return {
        "since": since_datetime(since),
        "identity": identity,
        "operation": operation,
        "limit": limit,
    }


R = TypeVar("R", bound=Response)


class AsyncEngine(EngineBase):
    """An engine, driven from async code."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.keys = AsyncKeys(self)
        self.workflows = AsyncWorkflows(self)
        self.objects = AsyncObjectStore(self)
        self.shells = AsyncShells(self)
        self.proxies = AsyncProxies(self)
        self.bridges = AsyncBridges(self)
        self.fleet = AsyncFleet(self.bridges)
        self._remotes: dict[str, AsyncEngine] = {}
        """The agents' engines, by name (a fleet's calls reuse them)."""

    # -- the primitives: the only code that touches the transport ------------------------

    def _open(self, op: Operation[Any, Any]) -> Operation[Any, Any]:
        """The operation, if this engine is open and not in a trial (else raise)."""
        if self._closed:
            raise self._closed_error()
        if in_trial():
            raise NeedsLoop
        return op

    async def _call(self, op: Operation[Any, R], /, **params: Any) -> R:
        if self._closed:
            raise self._closed_error()
        if in_trial():  # a blocking caller's thread: only what never waits nor writes
            if op.mutating or op.writes_when or not self._transport.can_inline(op):
                raise NeedsLoop
            return cast(R, self._transport.call_inline(op, params))
        # The transport serves every operation, so it answers `Response`; the table's
        # row says which model it is (the one cast of the facades).
        return cast(R, await self._transport.call(op, params))

    def _stream(self, op: Operation[Any, R], /, **params: Any) -> AsyncIterator[R]:
        return cast(AsyncIterator[R], self._transport.stream(self._open(op), params))

    def _download(
        self, op: Operation[Any, Any], /, **params: Any
    ) -> AbstractAsyncContextManager[Download]:
        return self._transport.download(self._open(op), params)

    async def _upload(self, op: Operation[Any, R], body: Any, /, **params: Any) -> R:
        return cast(R, await self._transport.upload(self._open(op), params, body))

    def _channel(
        self, op: Operation[Any, Any], /, **params: Any
    ) -> AbstractAsyncContextManager[Any]:
        return self._transport.channel(self._open(op), params)

    async def _get_file(
        self, op: Operation[Any, Any], target: Path, progress: Progress, /, **params: Any
    ) -> int:
        return await self._transport.get_file(self._open(op), params, target, progress)

    async def _put_file(
        self, op: Operation[Any, R], source: Path, progress: Progress, /, **params: Any
    ) -> R:
        return cast(R, await self._transport.put_file(self._open(op), params, source, progress))

    def _clone(self) -> AsyncEngine:
        """The same engine as the same identity, over a transport of its own (fsspec
        opens one per event loop)."""
        if self._closed:
            raise self._closed_error()
        return AsyncEngine(self.url, transport=self._transport.clone())

    def _bridged(self, name: str) -> AsyncEngine:
        """The engine of agent `name`, through this one (its master); closed with it."""
        if self._closed:
            raise self._closed_error()
        remote = self._remotes.get(name)
        if remote is None or remote.closed:
            url = f"{self.url or 'in-process'}/api/bridges/{name}"
            remote = self._remotes[name] = AsyncEngine(url, transport=self._transport.bridged(name))
        return remote

    # -- the engine's own calls ----------------------------------------------------------

    async def health(self) -> Health:
        return await self._call(ops.engine.HEALTH)

    async def ping(self) -> Pong:
        return await self._call(ops.engine.PING)

    async def info(self) -> EngineInfo:
        return await self._call(ops.engine.INFO)

    async def stats(self) -> EngineStats:
        return await self._call(ops.engine.STATS)

    def watch_stats(
        self, interval: float = 1.0, count: int | None = None
    ) -> AsyncIterator[EngineStats]:
        return self._stream(ops.engine.STATS_WATCH, interval=interval, count=count)

    async def whoami(self) -> WhoAmI:
        return await self._call(ops.auth.WHOAMI)

    async def token(self, lifetime: int = 3600) -> Token:
        return await self._call(ops.auth.TOKEN, lifetime=lifetime)

    async def audit(
        self,
        since: Since = None,
        identity: str | None = None,
        operation: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        params = _audit_params(since, identity, operation, limit)
        return Listing((await self._call(ops.audit.LIST, **params)).records)  # a table in Jupyter

    async def aclose(self) -> None:
        """Close the transport (and an in-process core); later calls raise EngineClosed."""
        if self._closed:
            return
        self._closed = True
        for remote in self._remotes.values():
            with contextlib.suppress(Exception):
                await remote.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if exc[0] is None:
            await self.aclose()
            return
        with contextlib.suppress(Exception):  # what ended the block is what to report
            await self.aclose()


class Engine(EngineBase, Blocking[AsyncEngine]):
    """An engine, driven from blocking code: scripts, notebooks, the CLI."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        EngineBase.__init__(self, url, **kwargs)
        runner = Runner(inline=self._transport.in_process, closed=self._closed_error)
        self._owns_runner = True
        self._setup(runner, AsyncEngine(self.url, transport=self._transport))

    @classmethod
    def _sharing(cls, runner: Runner, twin: AsyncEngine) -> Engine:
        """A blocking engine over `twin` that runs on another engine's loop thread (a
        bridged engine: a fleet of them needs no thread each)."""
        engine = cls.__new__(cls)
        EngineBase.__init__(engine, twin.url, transport=twin._transport)
        engine._owns_runner = False
        engine._setup(runner, twin)
        return engine

    def _setup(self, runner: Runner, twin: AsyncEngine) -> None:
        Blocking.__init__(self, runner, twin)
        self._async._label = "Engine"
        self.keys = Keys(runner, self._async.keys)
        self.workflows = Workflows(runner, self._async.workflows)
        self.objects = ObjectStore(runner, self._async.objects)
        self.shells = Shells(runner, self._async.shells)
        self.proxies = Proxies(runner, self._async.proxies)
        self.bridges = Bridges(runner, self._async.bridges, partial(Engine._sharing, runner))
        self.fleet = Fleet(self.bridges)

    def _call(self, op: Operation[Any, R], /, **params: Any) -> R:
        result: R = self._run(self._async._call, op, **params)
        return result

    def _stream(self, op: Operation[Any, R], /, **params: Any) -> Iterator[R]:
        return self._runner.iterate(self._async._stream(op, **params))

    def health(self) -> Health:
        return self._run(self._async.health)

    def ping(self) -> Pong:
        return self._run(self._async.ping)

    def info(self) -> EngineInfo:
        return self._run(self._async.info)

    def stats(self) -> EngineStats:
        return self._run(self._async.stats)

    def watch_stats(self, interval: float = 1.0, count: int | None = None) -> Iterator[EngineStats]:
        return self._runner.iterate(self._async.watch_stats(interval, count))

    def whoami(self) -> WhoAmI:
        return self._run(self._async.whoami)

    def token(self, lifetime: int = 3600) -> Token:
        return self._run(self._async.token, lifetime)

    def audit(
        self,
        since: Since = None,
        identity: str | None = None,
        operation: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        return self._run(self._async.audit, since, identity, operation, limit)

    def close(self) -> None:
        """Close the transport and the loop thread; later calls raise EngineClosed."""
        if self._closed:
            return
        self._closed = True
        if not self._owns_runner:  # a bridged engine: its master's thread goes on
            self._runner.run_on_loop(self._async.aclose)
            return
        try:
            self._runner.run_on_loop(self._async.aclose)
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is None:
            self.close()
            return
        # What ended the block (an error, Ctrl-C's exit) is what to report, not a close
        # that failed because of it (a call still on the loop when Ctrl-C came).
        with contextlib.suppress(Exception):
            self.close()
