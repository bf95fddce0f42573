"""`engine.bridges`, the `Bridge` handle and `engine.fleet`, async and blocking.

A bridge is an agent engine joined to this (master) engine. `bridge.engine` is a whole
engine handle on the agent, reached through the master: the same collections, the
same errors, as for a local engine. `engine.fleet.map(fn)` runs `fn` over the agents'
handles at once and gives back every result and every error, one per agent.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from .. import _operations as ops
from .._display import Listing
from .._durations import parse_duration
from .._exceptions import UsageError
from .._models import BridgeEvent, BridgeInfo, BridgeToken
from ._base import Blocking
from ._fleet import FleetResult, FleetResults

if TYPE_CHECKING:
    from ._protocol import AsyncEngineLike

__all__ = [
    "AsyncBridge",
    "AsyncBridges",
    "AsyncFleet",
    "Bridge",
    "Bridges",
    "Fleet",
]

T = TypeVar("T")
Labels = Mapping[str, str] | str | None


def _labels(where: Labels) -> str | None:
    if where is None or isinstance(where, str):
        return where or None
    return ",".join(f"{key}={value}" for key, value in where.items()) or None


def _seconds(expires: str | float | timedelta) -> float:
    if isinstance(expires, timedelta):
        return expires.total_seconds()
    if isinstance(expires, int | float):
        return float(expires)
    return parse_duration(expires)


class AsyncBridge:
    """One agent, as the master sees it; `.engine` is the agent's own API."""

    def __init__(self, engine: AsyncEngineLike, info: BridgeInfo) -> None:
        self._master = engine
        self.info = info
        self._remote: AsyncEngineLike | None = None

    name = property(lambda self: self.info.name)
    status = property(lambda self: self.info.status)
    labels = property(lambda self: self.info.labels)

    def __repr__(self) -> str:
        return f"<AsyncBridge {self.name} {self.status}>"

    def _repr_html_(self) -> str | None:
        return self.info._repr_html_()

    @property
    def engine(self) -> AsyncEngineLike:
        """The agent's engine, through this master (made once, closed with the master)."""
        if self._remote is None:
            self._remote = self._master._bridged(self.name)
        return self._remote

    async def reload(self) -> BridgeInfo:
        self.info = await self._master._call(ops.bridges.GET, name=self.name)
        return self.info

    async def drain(self) -> BridgeInfo:
        """Place nothing new here; what runs keeps running."""
        self.info = await self._master._call(ops.bridges.DRAIN, name=self.name)
        return self.info

    async def remove(self) -> BridgeInfo:
        """Forget the agent (it must join again); nothing on it stops."""
        return await self._master._call(ops.bridges.REMOVE, name=self.name)


class AsyncBridges:
    def __init__(self, engine: AsyncEngineLike) -> None:
        self._engine = engine

    async def list(self, labels: Labels = None) -> builtins.list[AsyncBridge]:
        """The agents, those with all of `labels` ({"gpu": "true"} or "gpu=true")."""
        found = await self._engine._call(ops.bridges.LIST, labels=_labels(labels))
        return Listing(AsyncBridge(self._engine, info) for info in found.bridges)

    async def get(self, name: str) -> AsyncBridge:
        return AsyncBridge(self._engine, await self._engine._call(ops.bridges.GET, name=name))

    def events(
        self, labels: Labels = None, interval: float = 0.5, workflows: bool = False
    ) -> AsyncIterator[BridgeEvent]:
        """Each agent's status now, then every change (connected, disconnected, lost);
        with `workflows`, also every event of the workflows on connected agents
        (`event.workflow`, labelled by `event.agent`): the fleet's monitoring in one
        stream."""
        return self._engine._stream(ops.bridges.EVENTS, labels=_labels(labels),
                                    interval=interval, workflows=workflows)  # fmt: skip

    async def token(
        self, expires: str | float | timedelta = "1h", uses: int = 1,
        labels: Mapping[str, str] | None = None, url: str | None = None,
    ) -> BridgeToken:  # fmt: skip
        """A join token for `uses` agents until it `expires` (MASTER); an agent joins
        with `dxflow boot up --join TOKEN`. `url`: the address agents dial, when it is
        not the one the server bound (a NAT, a load balancer, a DNS name)."""
        return await self._engine._call(ops.bridges.TOKEN, expires=_seconds(expires), uses=uses,
                                        labels=dict(labels or {}), url=url)  # fmt: skip


class AsyncFleet:
    """The master's agents, all at once."""

    def __init__(self, bridges: AsyncBridges) -> None:
        self._bridges = bridges

    async def map(
        self, fn: Callable[[Any], Awaitable[T]], where: Labels = None, concurrency: int = 64,
        timeout: float | None = None, connected_only: bool = False,
    ) -> FleetResults[T]:  # fmt: skip
        """`await fn(agent_engine)` on every agent with the labels `where`, `concurrency`
        at once; each agent's value or error (a `timeout` per agent is a TimeoutError)."""
        if concurrency < 1:
            raise UsageError("concurrency must be at least 1")
        bridges = await self._bridges.list(where)
        if connected_only:
            bridges = [b for b in bridges if b.status == "connected"]
        gate = asyncio.Semaphore(concurrency)

        async def one(bridge: AsyncBridge) -> FleetResult[T]:
            async with gate:
                try:
                    value = await asyncio.wait_for(fn(bridge.engine), timeout)
                except Exception as exc:
                    return FleetResult(bridge.name, error=exc)
                return FleetResult(bridge.name, value=value)

        return FleetResults(await asyncio.gather(*(one(b) for b in bridges)))


# -- the blocking twins -------------------------------------------------------------------


class Bridge(Blocking[AsyncBridge]):
    """The blocking twin of `AsyncBridge`."""

    def __init__(self, runner: Any, twin: AsyncBridge, wrap: Callable[[Any], Any]) -> None:
        super().__init__(runner, twin)
        self._wrap = wrap
        self._engine: Any = None
        self._aengine: Any = None

    info = property(lambda self: self._async.info)
    name = property(lambda self: self._async.name)
    status = property(lambda self: self._async.status)
    labels = property(lambda self: self._async.labels)

    def __repr__(self) -> str:
        return f"<Bridge {self.name} {self.status}>"

    def _repr_html_(self) -> str | None:
        return self._async._repr_html_()

    @property
    def engine(self) -> Any:
        """The agent's engine (a blocking `Engine`), through this master."""
        if self._engine is None:
            self._engine = self._wrap(self._async.engine)
        return self._engine

    @property
    def aengine(self) -> Any:
        """The agent's `AsyncEngine`, through this master, for code on an event loop of
        its own (a connection pool of its own too: pools belong to one loop)."""
        if self._aengine is None:
            self._aengine = self._async.engine._clone()
        return self._aengine

    def reload(self) -> BridgeInfo:
        return self._run(self._async.reload)

    def drain(self) -> BridgeInfo:
        return self._run(self._async.drain)

    def remove(self) -> BridgeInfo:
        return self._run(self._async.remove)


class Bridges(Blocking[AsyncBridges]):
    """The blocking twin of `AsyncBridges`."""

    def __init__(self, runner: Any, twin: AsyncBridges, wrap: Callable[[Any], Any]) -> None:
        super().__init__(runner, twin)
        self._wrap = wrap

    def list(self, labels: Labels = None) -> builtins.list[Bridge]:
        found = self._run(self._async.list, labels)
        return Listing(Bridge(self._runner, b, self._wrap) for b in found)

    def get(self, name: str) -> Bridge:
        return Bridge(self._runner, self._run(self._async.get, name), self._wrap)

    def token(
        self, expires: str | float | timedelta = "1h", uses: int = 1,
        labels: Mapping[str, str] | None = None, url: str | None = None,
    ) -> BridgeToken:  # fmt: skip
        return self._run(self._async.token, expires, uses, labels, url)

    def events(
        self, labels: Labels = None, interval: float = 0.5, workflows: bool = False
    ) -> Iterator[BridgeEvent]:
        """See `AsyncBridges.events`."""
        return self._runner.iterate(self._async.events(labels, interval, workflows))


class Fleet:
    """The blocking twin of `AsyncFleet`: `fn` takes a blocking `Engine` and runs on a
    pool of `concurrency` threads."""

    def __init__(self, bridges: Bridges) -> None:
        self._bridges = bridges

    def map(
        self, fn: Callable[[Any], T], where: Labels = None, concurrency: int = 64,
        timeout: float | None = None, connected_only: bool = False,
    ) -> FleetResults[T]:  # fmt: skip
        """`fn(agent_engine)` on every agent with the labels `where`; see AsyncFleet.map."""
        if concurrency < 1:
            raise UsageError("concurrency must be at least 1")
        bridges = self._bridges.list(where)
        if connected_only:
            bridges = [b for b in bridges if b.status == "connected"]

        def one(bridge: Bridge) -> FleetResult[T]:
            try:
                return FleetResult(bridge.name, value=fn(bridge.engine))
            except Exception as exc:
                return FleetResult(bridge.name, error=exc)

        if not bridges:
            return FleetResults()
        with ThreadPoolExecutor(min(concurrency, len(bridges)), "dxflow-fleet") as pool:
            futures = [pool.submit(one, b) for b in bridges]
            return FleetResults(_gather(futures, bridges, timeout))


def _gather(futures: builtins.list[Any], bridges: builtins.list[Bridge],
            timeout: float | None) -> Iterator[FleetResult[Any]]:  # fmt: skip
    for future, bridge in zip(futures, bridges, strict=True):
        try:
            yield future.result(timeout)
        except TimeoutError as exc:
            yield FleetResult(bridge.name, error=exc)
