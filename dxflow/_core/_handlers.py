"""Core handlers are methods marked with the operation they implement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Handler", "collect_handlers", "handles"]

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)
_MARK = "__dxflow_operation__"


def handles(name: str) -> Callable[[F], F]:
    """Mark a service method as the handler of operation `name`."""

    def mark(function: F) -> F:
        setattr(function, _MARK, name)
        return function

    return mark


def collect_handlers(*services: object) -> dict[str, Handler]:
    """Map operation names to the bound handlers of `services`; a name twice is a bug."""
    handlers: dict[str, Handler] = {}
    for service in services:
        for attr in dir(type(service)):
            name = getattr(getattr(type(service), attr), _MARK, None)
            if name is None:
                continue
            if name in handlers:
                raise RuntimeError(f"operation {name} has two handlers")
            handlers[name] = getattr(service, attr)
    return handlers
