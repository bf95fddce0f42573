"""`AsyncEngine` and its blocking twin `Engine`.

Both are thin: every method names an operation and its parameters, and the transport
does the rest. `Engine` runs the async transport on a private loop thread, except for
in-process operations that never wait, which it runs directly on the caller's thread.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

from .._durations import since_datetime
from .._models import AuditRecord, EngineInfo, EngineStats, Health, Pong, Token, WhoAmI
from .._operations import OPERATIONS
from .._runner import Runner
from .._transports import Transport
from ._connect import KeyPath, from_env_args, home_args, open_transport
from .keys import AsyncKeys, Keys
from .objects import AsyncObjectStore, ObjectStore
from .shells import AsyncShells, Shells
from .workflows import AsyncWorkflows, Workflows

__all__ = ["AsyncEngine", "Engine"]

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


class _Options:
    """The constructor both twins share: no URL is an in-process engine."""

    def __init__(
        self,
        url: str | None = None,
        *,
        key: KeyPath | None = None,
        home: KeyPath | None = None,
        profile: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
        token_lifetime: int = 3600,
        transport: Transport | None = None,
    ) -> None:
        self.url = url
        self._transport: Transport = transport or open_transport(
            url,
            key,
            home=home,
            profile=profile,
            verify=verify,
            timeout=timeout,
            token_lifetime=token_lifetime,
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> Self:
        """The engine named by `DXFLOW_URL` and `DXFLOW_KEY`; in-process when unset."""
        return cls(**{**from_env_args(), **kwargs})

    @classmethod
    def from_home(cls, home: KeyPath | None = None, **kwargs: Any) -> Self:
        """The engine booted on `home` (default `DXFLOW_HOME`), through its unix socket."""
        return cls(**home_args(home), **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url or 'in-process'}>"


class AsyncEngine(_Options):
    """An engine, driven from async code."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.keys = AsyncKeys(self)
        self.workflows = AsyncWorkflows(self)
        self.objects = AsyncObjectStore(self)
        self.shells = AsyncShells(self)

    async def _call(self, operation: str, /, **params: Any) -> Any:
        return await self._transport.call(OPERATIONS[operation], params)

    def _stream(self, operation: str, /, **params: Any) -> AsyncIterator[Any]:
        return self._transport.stream(OPERATIONS[operation], params)

    async def health(self) -> Health:
        return await self._call("engine.health")

    async def ping(self) -> Pong:
        return await self._call("engine.ping")

    async def info(self) -> EngineInfo:
        return await self._call("engine.info")

    async def stats(self) -> EngineStats:
        return await self._call("engine.stats")

    def watch_stats(
        self, interval: float = 1.0, count: int | None = None
    ) -> AsyncIterator[EngineStats]:
        return self._stream("engine.stats.watch", interval=interval, count=count)

    async def whoami(self) -> WhoAmI:
        return await self._call("auth.whoami")

    async def token(self, lifetime: int = 3600) -> Token:
        return await self._call("auth.token", lifetime=lifetime)

    async def audit(
        self,
        since: Since = None,
        identity: str | None = None,
        operation: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        return (
            await self._call("audit.list", **_audit_params(since, identity, operation, limit))
        ).records

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Engine(_Options):
    """An engine, driven from blocking code: scripts, notebooks, the CLI."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._runner = Runner()
        self.keys = Keys(self)
        self.workflows = Workflows(self)
        self._async = AsyncEngine(self.url, transport=self._transport)
        self.objects = ObjectStore(self)
        self.shells = Shells(self)

    def _call(self, operation: str, /, **params: Any) -> Any:
        op = OPERATIONS[operation]
        if self._transport.can_inline(op):
            return self._transport.call_inline(op, params)
        return self._runner.run(self._transport.call, op, params)

    def _stream(self, operation: str, /, **params: Any) -> Iterator[Any]:
        return self._runner.iterate(self._transport.stream(OPERATIONS[operation], params))

    def health(self) -> Health:
        return self._call("engine.health")

    def ping(self) -> Pong:
        return self._call("engine.ping")

    def info(self) -> EngineInfo:
        return self._call("engine.info")

    def stats(self) -> EngineStats:
        return self._call("engine.stats")

    def watch_stats(self, interval: float = 1.0, count: int | None = None) -> Iterator[EngineStats]:
        return self._stream("engine.stats.watch", interval=interval, count=count)

    def whoami(self) -> WhoAmI:
        return self._call("auth.whoami")

    def token(self, lifetime: int = 3600) -> Token:
        return self._call("auth.token", lifetime=lifetime)

    def audit(
        self,
        since: Since = None,
        identity: str | None = None,
        operation: str | None = None,
        limit: int = 100,
    ) -> list[AuditRecord]:
        return self._call("audit.list", **_audit_params(since, identity, operation, limit)).records

    def close(self) -> None:
        try:
            self._runner.run(self._transport.aclose)
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
