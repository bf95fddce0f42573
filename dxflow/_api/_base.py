"""What both engine twins share without doing I/O, and the base of every blocking twin.

`EngineBase` holds where the engine is, the transport that reaches it and whether it
is open; `AsyncEngine` adds the I/O primitives, `Engine` runs them on its `Runner`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, Self, TypeVar

from .._exceptions import EngineClosed
from .._runner import Runner
from .._transports import Transport
from ._connect import KeyPath, from_env_args, home_args

__all__ = ["Blocking", "EngineBase"]

T = TypeVar("T")
A = TypeVar("A")


class EngineBase:
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
        if transport is None:
            from .._transports._open import open_transport

            transport = open_transport(url, key, home=home, profile=profile, verify=verify,
                                       timeout=timeout, token_lifetime=token_lifetime)  # fmt: skip
        self._transport: Transport = transport
        self.url = url if url is not None else transport.url
        self._closed = False

    @classmethod
    def from_env(cls, **kwargs: Any) -> Self:
        """The engine named by `DXFLOW_URL` and `DXFLOW_KEY`; in-process when unset."""
        return cls(**{**from_env_args(), **kwargs})

    @classmethod
    def from_home(cls, home: KeyPath | None = None, **kwargs: Any) -> Self:
        """The engine booted on `home` (default `DXFLOW_HOME`), through its unix socket."""
        return cls(**home_args(home), **kwargs)

    @property
    def closed(self) -> bool:
        """True once `close()` / `aclose()` ran: every call then raises EngineClosed."""
        return self._closed

    @property
    def in_process(self) -> bool:
        """The engine runs in this process (no URL)."""
        return self._transport.in_process

    _label: str | None = None
    """The class name users know this engine by (an Engine's async twin says Engine)."""

    def _closed_error(self) -> EngineClosed:
        kind = self._label or type(self).__name__
        return EngineClosed(
            f"this {kind} ({self.url or 'in-process'}) was closed and takes no more calls; "
            f"open a new one with dxflow.{kind}(...) (`with dxflow.{kind}(...) as engine:` "
            "closes it when the block ends)"
        )

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<{type(self).__name__} {self.url or 'in-process'}{state}>"


class Blocking(Generic[A]):
    """A blocking twin: it holds its async twin, and each method runs the twin's on the
    engine's `Runner` (see there for the in-process fast path)."""

    def __init__(self, runner: Runner, twin: A) -> None:
        self._runner = runner
        self._async = twin

    def _run(self, method: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kw: Any) -> T:
        return self._runner.run(method, *args, **kw)
